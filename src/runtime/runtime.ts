import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { CancelReason } from "../agent/cancellation.js";
import type { RuntimeConfig } from "../config/config.js";
import { invalidArgument } from "../errors.js";
import { LlmClientFactory } from "../llm/factory.js";
import type { Logger } from "../logging.js";
import { mergeConfig } from "../session/config-merge.js";
import { defaultSessionConfig, newSessionRecord } from "../session/new-session.js";
import { decodePageToken, encodePageToken, pageSize } from "../session/paging.js";
import { SessionRegistry } from "../session/registry.js";
import { restoreSessions } from "../session/restore.js";
import { Session, type SessionView } from "../session/session.js";
import type { ChildPolicy, Message, SessionConfig, SessionConfigPatch } from "../session/types.js";
import { Persister } from "../store/persister.js";
import type { SessionRecord } from "../store/record.js";
import type { SessionStore } from "../store/types.js";
import { ToolExecutor } from "../tools/executor.js";
import type { ToolRegistry } from "../tools/registry.js";
import { ModelClients } from "./model-clients.js";
import { TurnRunner, type StartTurnOptions, type TurnHandle } from "./turn-runner.js";

export interface RuntimeOptions {
  config: RuntimeConfig;
  store: SessionStore;
  tools: ToolRegistry;
  logger: Logger;
  llm?: LlmClientFactory;
}

export interface CreateSessionOptions {
  owner: string;
  config: SessionConfigPatch;
  /** "" for the default, <dataDir>/workspaces/<session id>. */
  workspace: string;
  ephemeral: boolean;
  labels: Record<string, string>;
}

export interface CreateChildOptions {
  config: SessionConfigPatch;
  /** "" for the parent's workspace. */
  workspace: string;
  labels: Record<string, string>;
}

export interface Page {
  pageSize: number;
  pageToken: string;
}

/**
 * The core's front door: everything a client can ask of agentd, in domain terms. Edges (the gRPC
 * server today) translate their requests into these calls and the results back; none of them
 * reaches into a session. Requests never wait on the store: sessions report their changes to the
 * persister, which writes in the background.
 */
export class Runtime {
  private readonly registry: SessionRegistry;
  private readonly persister: Persister;
  private readonly models: ModelClients;
  private readonly turns: TurnRunner;

  private constructor(private readonly options: RuntimeOptions) {
    const { config, store, tools, logger } = options;
    this.registry = new SessionRegistry(config.limits);
    this.persister = new Persister(store, config.persistence, {
      onFailure: (sessionId, error, attempts) => {
        logger.error({ sessionId, attempts, err: error }, "writing session to the store failed; will retry");
        this.registry.find(sessionId)?.reportPersistenceFailure(error.message, attempts);
      },
      onSuccess: (sessionId) => {
        logger.info({ sessionId }, "session written to the store after earlier failures");
        this.registry.find(sessionId)?.clearPersistenceError();
      },
    });
    this.models = new ModelClients(options.llm ?? new LlmClientFactory());
    this.turns = new TurnRunner({ models: this.models, registry: tools, executor: new ToolExecutor(tools), logger });
  }

  /** A runtime with every stored session restored. */
  static async open(options: RuntimeOptions): Promise<Runtime> {
    const runtime = new Runtime(options);
    await restoreSessions(options.store, runtime.registry, (record) => runtime.track(record), options.logger);
    return runtime;
  }

  async createSession(options: CreateSessionOptions): Promise<SessionView> {
    const config = mergeConfig(defaultSessionConfig(this.options.config.sessionDefaults), options.config);
    return this.create(options.owner || "default", null, config, options);
  }

  async createChildSession(parentId: string, options: CreateChildOptions): Promise<SessionView> {
    const parent = this.registry.get(parentId);
    return this.create(parent.owner, parent.id, mergeConfig(parent.config, options.config), {
      workspace: options.workspace || parent.workspace,
      ephemeral: parent.ephemeral,
      labels: options.labels,
    });
  }

  getSession(sessionId: string): SessionView {
    return this.registry.get(sessionId);
  }

  listSessions(options: { owner: string } & Page): { sessions: SessionView[]; nextPageToken: string } {
    return this.registry.list(options);
  }

  listChildSessions(sessionId: string): SessionView[] {
    return this.registry.children(sessionId);
  }

  async destroySession(sessionId: string, policy: ChildPolicy): Promise<{ destroyed: string[]; orphaned: string[] }> {
    const { destroyed, orphaned } = await this.registry.destroy(sessionId, policy);
    for (const session of destroyed) {
      this.models.forget(session.id);
      if (!session.ephemeral) this.persister.markDeleted(session.id);
    }
    this.options.logger.info({ sessionId, destroyed: destroyed.length, orphaned: orphaned.length }, "session destroyed");
    return { destroyed: destroyed.map((s) => s.id), orphaned: orphaned.map((s) => s.id) };
  }

  configureSession(sessionId: string, patch: SessionConfigPatch): SessionView {
    const session = this.registry.get(sessionId);
    if (patch.model) this.models.validate(patch.model);
    session.configure(mergeConfig(session.config, patch));
    return session;
  }

  /** Moves the session to running and starts a turn; see TurnHandle for how to follow it. */
  startTurn(sessionId: string, prompt: string, options: StartTurnOptions = {}): TurnHandle {
    return this.turns.start(this.registry.get(sessionId), prompt, options);
  }

  /** Cancels the session's running turn; returns its id, or null when none was running. */
  cancelTurn(sessionId: string, reason: CancelReason): string | null {
    return this.registry.get(sessionId).cancelTurn(reason);
  }

  pause(sessionId: string): SessionView {
    const session = this.registry.get(sessionId);
    session.pause();
    return session;
  }

  resume(sessionId: string): SessionView {
    const session = this.registry.get(sessionId);
    session.resume();
    return session;
  }

  messages(sessionId: string, page: Page): { messages: readonly Message[]; nextPageToken: string } {
    const session = this.registry.get(sessionId);
    const size = pageSize(page.pageSize, 100);
    const cursor = decodePageToken("messages", page.pageToken);
    const offset = cursor === null ? 0 : Number(cursor);
    if (!Number.isInteger(offset) || offset < 0) throw invalidArgument("page_token is not valid here");
    const messages = session.messagesPage(offset, size);
    const next = offset + messages.length;
    return { messages, nextPageToken: next < session.messageCount ? encodePageToken("messages", String(next)) : "" };
  }

  /** Writes everything pending to the store now. */
  flush(): Promise<void> {
    return this.persister.flush();
  }

  /** Cancels every running turn with reason `shutdown` and waits until they have ended. */
  async stopTurns(): Promise<void> {
    const sessions = [...this.registry.all()];
    for (const session of sessions) session.cancelTurn("shutdown");
    await Promise.all(sessions.map((s) => s.settled()));
  }

  /** Flushes the store and stops writing; returns how many sessions could not be written. */
  async close(): Promise<number> {
    await this.persister.close();
    return this.persister.pendingCount();
  }

  private async create(
    owner: string,
    parentId: string | null,
    config: SessionConfig,
    options: { workspace: string; ephemeral: boolean; labels: Record<string, string> },
  ): Promise<Session> {
    this.registry.checkCapacity(owner);
    if (config.model) this.models.validate(config.model);
    const id = randomUUID();
    const workspace = path.resolve(options.workspace || path.join(this.options.config.dataDir, "workspaces", id));
    await mkdir(workspace, { recursive: true });
    // Checked again: while the directory was made, another request may have taken the last place,
    // or destroyed the parent.
    this.registry.checkCapacity(owner);
    if (parentId !== null) this.registry.get(parentId);
    const { ephemeral, labels } = options;
    const session = this.track(newSessionRecord({ id, owner, parentId, config, workspace, ephemeral, labels }));
    this.registry.add(session);
    session.markChanged();
    return session;
  }

  /** A live session for a record, whose changes are written in the background unless ephemeral. */
  private track(record: SessionRecord): Session {
    return new Session(record, (changed) => {
      if (!changed.ephemeral && changed.state !== "closed") this.persister.markDirty(changed.id, () => changed.toRecord());
    });
  }
}
