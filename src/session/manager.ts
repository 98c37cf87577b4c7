import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { filter, take } from "rxjs";
import type { CancelReason } from "../agent/cancellation.js";
import { isTerminalPayload } from "../agent/events.js";
import { runTurn } from "../agent/loop.js";
import type { RuntimeConfig } from "../config/config.js";
import { failedPrecondition, invalidArgument, notFound, resourceExhausted } from "../errors.js";
import type { LlmClientFactory } from "../llm/factory.js";
import type { LlmClient } from "../llm/types.js";
import type { Logger } from "../logging.js";
import type { Persister } from "../store/persister.js";
import type { SessionStore } from "../store/types.js";
import type { ToolExecutor } from "../tools/executor.js";
import type { ToolRegistry } from "../tools/registry.js";
import { mergeConfig } from "./config-merge.js";
import { decodePageToken, encodePageToken, pageSize } from "./paging.js";
import { repairInterruptedTurn } from "./restore.js";
import { Session, type PreparedTurn } from "./session.js";
import type { SessionConfig, SessionConfigPatch, SessionRecord, StoredMessage } from "./types.js";

export interface SessionManagerDeps {
  config: RuntimeConfig;
  store: SessionStore;
  persister: Persister;
  llm: LlmClientFactory;
  registry: ToolRegistry;
  executor: ToolExecutor;
  logger: Logger;
}

export interface CreateSessionOptions {
  owner: string;
  config: SessionConfigPatch;
  workspace: string;
  ephemeral: boolean;
  labels: Record<string, string>;
}

export interface CreateChildOptions {
  config: SessionConfigPatch;
  workspace: string;
  labels: Record<string, string>;
}

export type ChildPolicy = "cascade" | "orphan";

/**
 * Owns every live session: creation with capacity limits, parent/child links, lookup and paging,
 * destruction, and starting turns with the right model client and tools. It never waits on the store:
 * sessions report their changes to the persister, which writes in the background.
 */
export class SessionManager {
  private readonly sessions = new Map<string, Session>();
  /** One model client per session, so stateful providers (the scripted one) continue across turns. */
  private readonly llmClients = new Map<string, { key: string; client: LlmClient }>();

  constructor(private readonly deps: SessionManagerDeps) {}

  /** Loads every stored session. Damaged files are logged and skipped, never rewritten. */
  async restore(): Promise<{ restored: number; failed: number }> {
    const { records, failures } = await this.deps.store.loadAll();
    for (const failure of failures) {
      this.deps.logger.error(failure, "skipping a stored session that cannot be read; the file is left untouched");
    }
    for (const stored of records) {
      const { record, repaired } = repairInterruptedTurn(stored);
      const session = this.track(record);
      if (repaired) session.touch();
    }
    // Children whose parent is gone (its file unreadable, or a crash between two writes) become top-level.
    for (const session of this.sessions.values()) {
      if (session.parentId !== null && !this.sessions.has(session.parentId)) {
        this.deps.logger.warn({ sessionId: session.id, parentId: session.parentId }, "parent not found; session restored as top-level");
        session.parentId = null;
        session.touch();
      }
    }
    this.deps.logger.info({ restored: records.length, failed: failures.length }, "sessions restored");
    return { restored: records.length, failed: failures.length };
  }

  async create(options: CreateSessionOptions): Promise<Session> {
    const defaults = this.deps.config.sessionDefaults;
    const base: SessionConfig = {
      model: defaults.model,
      systemPrompt: defaults.systemPrompt,
      limits: { maxToolRounds: defaults.maxToolRounds, toolTimeoutMs: defaults.toolTimeoutMs },
    };
    return this.createSession(options.owner, null, mergeConfig(base, options.config), options);
  }

  async createChild(parentId: string, options: CreateChildOptions): Promise<Session> {
    const parent = this.get(parentId);
    return this.createSession(parent.owner, parent, mergeConfig(parent.config, options.config), {
      workspace: options.workspace || parent.workspace,
      ephemeral: parent.ephemeral,
      labels: options.labels,
    });
  }

  get(sessionId: string): Session {
    if (sessionId === "") throw invalidArgument("session_id is required");
    const session = this.sessions.get(sessionId);
    if (!session) throw notFound(`session ${sessionId} not found`);
    return session;
  }

  list(options: { owner: string; pageSize: number; pageToken: string }): { sessions: Session[]; nextPageToken: string } {
    const size = pageSize(options.pageSize, 50);
    const after = decodePageToken("sessions", options.pageToken);
    const ordered = [...this.sessions.values()]
      .filter((s) => options.owner === "" || s.owner === options.owner)
      .sort(compareByCreation);
    const start = after === null ? 0 : ordered.findIndex((s) => cursorOf(s) > after);
    const page = start < 0 ? [] : ordered.slice(start, start + size);
    const last = page.at(-1);
    const more = start >= 0 && start + size < ordered.length;
    return { sessions: page, nextPageToken: more && last ? encodePageToken("sessions", cursorOf(last)) : "" };
  }

  children(sessionId: string): Session[] {
    this.get(sessionId);
    return [...this.sessions.values()].filter((s) => s.parentId === sessionId).sort(compareByCreation);
  }

  /** Destroys a session; its children are destroyed too (cascade) or become top-level (orphan). */
  async destroy(sessionId: string, policy: ChildPolicy): Promise<{ destroyed: string[]; orphaned: string[] }> {
    const root = this.get(sessionId);
    const orphaned: string[] = [];
    let doomed: Session[] = [root];
    if (policy === "cascade") {
      doomed = this.descendantsOf(root);
    } else {
      for (const child of this.children(sessionId)) {
        child.parentId = null;
        child.touch();
        orphaned.push(child.id);
      }
    }
    // Removed from the index first so no new turn can start on a session being destroyed.
    for (const session of doomed) this.sessions.delete(session.id);
    await Promise.all(
      doomed.map(async (session) => {
        await session.close();
        this.llmClients.delete(session.id);
        if (!session.ephemeral) this.deps.persister.markDeleted(session.id);
      }),
    );
    this.deps.logger.info({ sessionId, destroyed: doomed.length, orphaned: orphaned.length }, "session destroyed");
    return { destroyed: doomed.map((s) => s.id), orphaned };
  }

  configure(sessionId: string, patch: SessionConfigPatch): Session {
    const session = this.get(sessionId);
    const config = mergeConfig(session.config, patch);
    if (patch.model) this.deps.llm.validate(patch.model);
    session.configure(config);
    this.llmClients.delete(sessionId);
    return session;
  }

  /**
   * Moves the session to running and returns a turn the caller starts once it listens to the
   * session's events. `apiKey` is used for this turn only.
   */
  prepareTurn(sessionId: string, prompt: string, apiKey: string): { session: Session; turn: PreparedTurn } {
    const session = this.get(sessionId);
    if (prompt.trim() === "") throw invalidArgument("prompt must not be empty");
    const { config } = session;
    // Resolved before the turn starts, so a missing model or API key is a clear status, not a failed turn.
    const llm = this.llmFor(session, apiKey);
    const turn = session.prepareTurn((turnId, host, signal) =>
      runTurn({
        turnId,
        prompt,
        systemPrompt: config.systemPrompt,
        limits: config.limits,
        temperature: config.model?.temperature,
        maxOutputTokens: config.model?.maxOutputTokens,
        llm,
        tools: {
          definitions: () => this.deps.registry.definitions(),
          execute: (call, callSignal) =>
            this.deps.executor.execute(call, {
              sessionId: session.id,
              workspace: session.workspace,
              signal: callSignal,
              timeoutMs: config.limits.toolTimeoutMs,
            }),
        },
        host,
        signal,
      }),
    );
    this.logTurnEnd(session, turn.turnId);
    return { session, turn };
  }

  cancel(sessionId: string, reason: CancelReason): string | null {
    return this.get(sessionId).cancelTurn(reason);
  }

  pause(sessionId: string): Session {
    const session = this.get(sessionId);
    session.pause();
    return session;
  }

  resume(sessionId: string): Session {
    const session = this.get(sessionId);
    session.resume();
    return session;
  }

  messages(sessionId: string, options: { pageSize: number; pageToken: string }): { messages: StoredMessage[]; nextPageToken: string } {
    const session = this.get(sessionId);
    const size = pageSize(options.pageSize, 100);
    const cursor = decodePageToken("messages", options.pageToken);
    const offset = cursor === null ? 0 : Number(cursor);
    if (!Number.isInteger(offset) || offset < 0) throw invalidArgument("page_token is not valid here");
    const messages = session.messagesPage(offset, size);
    const next = offset + messages.length;
    return { messages, nextPageToken: next < session.messageCount ? encodePageToken("messages", String(next)) : "" };
  }

  /** The session with this id, or undefined; for callers that must not throw. */
  find(sessionId: string): Session | undefined {
    return this.sessions.get(sessionId);
  }

  all(): Session[] {
    return [...this.sessions.values()];
  }

  /** Cancels every running turn and waits for them to end; the caller flushes the persister after. */
  async shutdown(): Promise<void> {
    for (const session of this.sessions.values()) session.cancelTurn("shutdown");
    await Promise.all([...this.sessions.values()].map((s) => s.settled()));
  }

  private async createSession(
    owner: string,
    parent: Session | null,
    config: SessionConfig,
    options: { workspace: string; ephemeral: boolean; labels: Record<string, string> },
  ): Promise<Session> {
    const resolvedOwner = owner || "default";
    this.checkCapacity(resolvedOwner);
    if (config.model) this.deps.llm.validate(config.model);
    const id = randomUUID();
    const workspace = path.resolve(options.workspace || path.join(this.deps.config.dataDir, "workspaces", id));
    await mkdir(workspace, { recursive: true });
    // Checked again: another request may have taken the last place while the directory was made.
    this.checkCapacity(resolvedOwner);
    const now = new Date().toISOString();
    const record: SessionRecord = {
      version: 1,
      id,
      owner: resolvedOwner,
      parentId: parent?.id ?? null,
      state: "idle",
      config,
      workspace,
      ephemeral: options.ephemeral,
      labels: { ...options.labels },
      createdAt: now,
      updatedAt: now,
      usage: { inputTokens: 0, outputTokens: 0 },
      lastSequence: 0,
      messages: [],
    };
    const session = this.track(record);
    session.touch();
    return session;
  }

  private track(record: SessionRecord): Session {
    const session = new Session(record, (changed) => {
      if (!changed.ephemeral && changed.state !== "closed") {
        this.deps.persister.markDirty(changed.id, () => changed.toRecord());
      }
    });
    this.sessions.set(session.id, session);
    return session;
  }

  private logTurnEnd(session: Session, turnId: string): void {
    const startedAt = performance.now();
    session.events$
      .pipe(
        filter((event) => event.turnId === turnId && isTerminalPayload(event.payload)),
        take(1),
      )
      .subscribe((event) => {
        const outcome = event.payload?.$case;
        const detail = event.payload?.$case === "error" ? event.payload.error : undefined;
        this.deps.logger.info(
          { sessionId: session.id, turnId, outcome, error: detail, durationMs: Math.round(performance.now() - startedAt) },
          "turn ended",
        );
      });
  }

  private checkCapacity(owner: string): void {
    const { maxSessions, maxSessionsPerOwner } = this.deps.config.limits;
    if (this.sessions.size >= maxSessions) {
      throw resourceExhausted(
        `the server holds ${this.sessions.size} sessions, its limit (limits.maxSessions = ${maxSessions}); destroy sessions or raise the limit`,
      );
    }
    let owned = 0;
    for (const session of this.sessions.values()) if (session.owner === owner) owned++;
    if (owned >= maxSessionsPerOwner) {
      throw resourceExhausted(
        `owner "${owner}" has ${owned} sessions, the per-owner limit (limits.maxSessionsPerOwner = ${maxSessionsPerOwner}); destroy some first`,
      );
    }
  }

  private descendantsOf(root: Session): Session[] {
    const result = [root];
    for (let i = 0; i < result.length; i++) {
      const current = result[i]!;
      for (const session of this.sessions.values()) if (session.parentId === current.id) result.push(session);
    }
    return result;
  }

  private llmFor(session: Session, apiKey: string): LlmClient {
    const model = session.config.model;
    if (!model) {
      throw failedPrecondition(
        `session ${session.id} has no model; set one with ConfigureSession (provider and model) or start the server with a default model (--provider, --model)`,
      );
    }
    // A key passed with the request is used for this turn only and never cached.
    if (apiKey !== "") return this.deps.llm.create(model, apiKey);
    const key = JSON.stringify(model);
    const cached = this.llmClients.get(session.id);
    if (cached?.key === key) return cached.client;
    const client = this.deps.llm.create(model);
    this.llmClients.set(session.id, { key, client });
    return client;
  }
}

function cursorOf(session: Session): string {
  return `${session.createdAt}|${session.id}`;
}

function compareByCreation(a: Session, b: Session): number {
  const left = cursorOf(a);
  const right = cursorOf(b);
  return left < right ? -1 : left > right ? 1 : 0;
}
