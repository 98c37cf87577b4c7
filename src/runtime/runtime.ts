import { randomUUID } from "node:crypto";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import type { CancelReason } from "../agent/cancellation.js";
import type { RuntimeConfig } from "../config/config.js";
import { AgentdError, failedPrecondition, invalidArgument, notFound } from "../errors.js";
import { argumentsObjectOrEmpty } from "../llm/provider.js";
import type { PendingConfirmation, Resolution } from "../policy/confirmations.js";
import { rememberedRule } from "../policy/rules.js";
import { LlmClientFactory } from "../llm/factory.js";
import { modelAccess } from "../llm/model-access.js";
import type { Logger } from "../logging.js";
import { mergeConfig } from "../session/config-merge.js";
import { defaultSessionConfig, newSessionRecord } from "../session/new-session.js";
import { decodePageToken, encodePageToken, fitToBudget, pageSize, type PageBudget } from "../session/paging.js";
import { SessionRegistry } from "../session/registry.js";
import { restoreSessions } from "../session/restore.js";
import { Session, type SessionView } from "../session/session.js";
import type { ChildPolicy, Message, SessionConfig, SessionConfigPatch } from "../session/types.js";
import { Persister } from "../store/persister.js";
import type { SessionRecord } from "../store/record.js";
import type { SessionStore } from "../store/types.js";
import { ToolExecutor } from "../tools/executor.js";
import type { ToolRegistry } from "../tools/registry.js";
import { isAdmin, type Caller } from "./caller.js";
import { checkApiKey, checkChars, checkConfigPatch, checkId, checkLabels, checkOwner, checkText, INPUT_LIMITS } from "./input-limits.js";
import { ModelClients } from "./model-clients.js";
import { TurnRunner, turnEvents, type StartTurnOptions, type TurnHandle } from "./turn-runner.js";
import type { Observable } from "rxjs";
import type { SessionEvent } from "../events/types.js";
import { WorkspacePolicy } from "./workspace-policy.js";
import { isInside } from "../util/paths.js";

export interface RuntimeOptions {
  config: RuntimeConfig;
  store: SessionStore;
  tools: ToolRegistry;
  logger: Logger;
  /** Replaces the factory built from the configuration's model access rules (tests). */
  llm?: LlmClientFactory;
}

export interface CreateSessionOptions {
  /** Honoured for admins only; "" for the caller's own. */
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

export interface ConfirmAnswer {
  confirmationId: string;
  decision: "approve" | "reject";
  reason: string;
  editedArgumentsJson?: string;
  remember: boolean;
}

export interface Page {
  pageSize: number;
  pageToken: string;
}

/**
 * The core's front door: everything a client can ask of agentd, in domain terms, on behalf of a
 * caller. Edges (the gRPC server today) authenticate the caller, translate their requests into
 * these calls and the results back; none of them reaches into a session. A caller who is not an
 * admin sees only its own sessions: anyone else's is "not found", exactly like one that does not
 * exist. Requests never wait on the store: sessions report their changes to the persister, which
 * writes in the background.
 */
export class Runtime {
  private readonly registry: SessionRegistry;
  private readonly persister: Persister;
  private readonly models: ModelClients;
  private readonly turns: TurnRunner;

  private constructor(
    private readonly options: RuntimeOptions,
    private readonly workspaces: WorkspacePolicy,
  ) {
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
    const access = modelAccess({
      allowedBaseUrls: config.models.allowedBaseUrls,
      allowedApiKeyEnvs: config.models.allowedApiKeyEnvs,
      keyedEndpoints: config.models.keyedEndpoints,
      scriptsDir: config.sandbox.scriptsDir || path.join(config.dataDir, "scripts"),
      trusted: config.sessionDefaults.model,
    });
    this.models = new ModelClients(options.llm ?? new LlmClientFactory({ access }));
    this.turns = new TurnRunner({
      models: this.models,
      registry: tools,
      executor: new ToolExecutor(tools),
      workspaces,
      maxConcurrentTurnsPerOwner: config.limits.maxConcurrentTurnsPerOwner,
      logger,
    });
  }

  /** A runtime with every stored session restored. */
  static async open(options: RuntimeOptions): Promise<Runtime> {
    const { dataDir, sandbox, auth, tls, audit } = options.config;
    const operatorFiles = [auth.tokensFile, auth.jwt?.publicKeyFile ?? "", tls.certFile, tls.keyFile, tls.clientCaFile, audit.file];
    const workspaces = await WorkspacePolicy.create(dataDir, sandbox.allowedWorkspaceRoots, operatorFiles.filter((f) => f !== ""));
    // The default scripts folder exists from the start, so an operator sees where scripts go.
    if (sandbox.scriptsDir === "") await mkdir(path.join(dataDir, "scripts"), { recursive: true });
    const runtime = new Runtime(options, workspaces);
    await restoreSessions(options.store, runtime.registry, (record) => runtime.track(record), options.logger, (session, suspended) => {
      options.logger.info({ sessionId: session.id, confirmationId: suspended.confirmation.id }, "resuming a turn that waits for a confirmation");
      try {
        runtime.turns.resume(session, suspended);
      } catch (error) {
        // One session that cannot resume must not keep the server from starting.
        options.logger.error({ sessionId: session.id, err: error }, "cannot resume the turn; its calls stay unanswered until the next turn");
      }
    });
    return runtime;
  }

  async createSession(caller: Caller, options: CreateSessionOptions): Promise<SessionView> {
    const owner = this.ownerFor(caller, checkOwner(options.owner));
    const config = mergeConfig(defaultSessionConfig(this.options.config.sessionDefaults), checkConfigPatch(options.config));
    const workspace = options.workspace === "" ? "" : await this.workspaces.check(options.workspace);
    return this.create(owner, null, config, { workspace, ephemeral: options.ephemeral, labels: checkLabels(options.labels), named: workspace !== "" });
  }

  /** A child belongs to its parent's owner and works in its parent's workspace unless told otherwise. */
  async createChildSession(caller: Caller, parentId: string, options: CreateChildOptions): Promise<SessionView> {
    const parent = this.owned(caller, parentId, "parent_id");
    const config = narrowedTo(parent.config, mergeConfig(parent.config, checkConfigPatch(options.config)));
    const named = options.workspace !== "";
    const workspace = named ? await this.workspaces.check(options.workspace, parent.workspace) : parent.workspace;
    return this.create(parent.owner, parent.id, config, { workspace, ephemeral: parent.ephemeral, labels: checkLabels(options.labels), named });
  }

  getSession(caller: Caller, sessionId: string): SessionView {
    return this.owned(caller, sessionId);
  }

  /** One page in creation order: a user's own sessions; an admin's, of one owner or of all. */
  listSessions(
    caller: Caller,
    options: { owner: string; budget?: PageBudget<SessionView> } & Page,
  ): { sessions: SessionView[]; nextPageToken: string } {
    checkOwner(options.owner);
    checkChars("page_token", options.pageToken, INPUT_LIMITS.pageTokenChars);
    if (!isAdmin(caller) && options.owner !== "" && options.owner !== caller.owner) {
      throw new AgentdError("permission_denied", `only an admin may list another owner's sessions; you are "${caller.owner}"`);
    }
    return this.registry.list({ ...options, owner: isAdmin(caller) ? options.owner : caller.owner });
  }

  listChildSessions(
    caller: Caller,
    sessionId: string,
    page: Page & { budget?: PageBudget<SessionView> } = { pageSize: 0, pageToken: "" },
  ): { sessions: SessionView[]; nextPageToken: string } {
    checkChars("page_token", page.pageToken, INPUT_LIMITS.pageTokenChars);
    return this.registry.list({ ...page, owner: "", parentId: this.owned(caller, sessionId).id });
  }

  async destroySession(caller: Caller, sessionId: string, policy: ChildPolicy): Promise<{ destroyed: string[]; orphaned: string[] }> {
    this.owned(caller, sessionId);
    const { destroyed, orphaned } = await this.registry.destroy(sessionId, policy);
    for (const session of destroyed) {
      this.models.forget(session.id);
      if (!session.ephemeral) this.persister.markDeleted(session.id);
    }
    this.options.logger.info({ sessionId, destroyed: destroyed.length, orphaned: orphaned.length }, "session destroyed");
    return { destroyed: destroyed.map((s) => s.id), orphaned: orphaned.map((s) => s.id) };
  }

  configureSession(caller: Caller, sessionId: string, patch: SessionConfigPatch): SessionView {
    const session = this.owned(caller, sessionId);
    checkConfigPatch(patch);
    if (patch.model) this.models.validate(patch.model);
    session.configure(mergeConfig(session.config, patch));
    return session;
  }

  /** Moves the session to running and starts a turn; see TurnHandle for how to follow it. */
  startTurn(caller: Caller, sessionId: string, prompt: string, options: StartTurnOptions = {}): TurnHandle {
    const session = this.owned(caller, sessionId);
    checkText("prompt", prompt, INPUT_LIMITS.promptBytes);
    if (options.apiKey !== undefined) checkApiKey(options.apiKey);
    return this.turns.start(session, prompt, options);
  }

  /** The running turn's events from now until its end: for a client that comes back, or a second one. */
  watchTurn(caller: Caller, sessionId: string): Observable<SessionEvent> {
    const session = this.owned(caller, sessionId);
    const turnId = session.activeTurnId;
    if (turnId === null) throw failedPrecondition(`session ${sessionId} has no running turn to watch`);
    return turnEvents(session, turnId);
  }

  /** Cancels the session's running turn; returns its id, or null when none was running. */
  cancelTurn(caller: Caller, sessionId: string, reason: CancelReason): string | null {
    return this.owned(caller, sessionId).cancelTurn(reason);
  }

  pause(caller: Caller, sessionId: string): SessionView {
    const session = this.owned(caller, sessionId);
    session.pause();
    return session;
  }

  resume(caller: Caller, sessionId: string): SessionView {
    const session = this.owned(caller, sessionId);
    session.resume();
    return session;
  }

  messages(caller: Caller, sessionId: string, page: Page & { budget?: PageBudget<Message> }): { messages: readonly Message[]; nextPageToken: string } {
    const session = this.owned(caller, sessionId);
    checkChars("page_token", page.pageToken, INPUT_LIMITS.pageTokenChars);
    const size = pageSize(page.pageSize, 100);
    const cursor = decodePageToken("messages", page.pageToken);
    const offset = cursor === null ? 0 : Number(cursor);
    if (!Number.isInteger(offset) || offset < 0) throw invalidArgument("page_token is not valid here");
    const messages = fitToBudget(session.messagesPage(offset, size), page.budget);
    const next = offset + messages.length;
    return { messages, nextPageToken: next < session.messageCount ? encodePageToken("messages", String(next)) : "" };
  }

  /**
   * Answers a confirmation. Edited arguments must fit the tool's schema (INVALID_ARGUMENT, and the
   * confirmation stays pending); `remember` adds an allow (or deny) rule for the tool or command
   * prefix. NOT_FOUND for an unknown id; FAILED_PRECONDITION, saying how, for one already decided.
   */
  confirmToolCall(caller: Caller, sessionId: string, answer: ConfirmAnswer): { resolution: Resolution; callId: string; rememberedRule: string } {
    const session = this.owned(caller, sessionId);
    const id = checkChars("confirmation_id", answer.confirmationId, INPUT_LIMITS.idChars);
    if (id === "") throw invalidArgument("confirmation_id is required");
    checkText("reason", answer.reason, 4096);
    const pending = session.confirmations.get(id);
    if (pending && session.confirmations.isSuspended(id)) {
      throw new AgentdError("unavailable", `the server is stopping; answer confirmation ${id} again once it has restarted`);
    }
    if (!pending) {
      const decided = session.confirmations.decision(id);
      if (decided) {
        throw failedPrecondition(`confirmation ${id} was already decided: ${decided.outcome.replace("_", " ")} by ${decided.resolvedBy}`);
      }
      throw notFound(`confirmation ${id} not found in session ${sessionId}`);
    }
    const approve = answer.decision === "approve";
    let args = argumentsObjectOrEmpty(pending.argumentsJson);
    if (approve && answer.editedArgumentsJson !== undefined) {
      checkText("edited_arguments_json", answer.editedArgumentsJson, INPUT_LIMITS.promptBytes);
      args = this.checkEditedArguments(pending.toolName, answer.editedArgumentsJson);
    }
    if (approve && answer.editedArgumentsJson !== undefined) {
      // The person saw one call and approved another: the edited one must pass the rules too.
      const { decision, rule } = session.ruleSet().decide({ name: pending.toolName, args, workspace: session.workspace });
      if (decision === "deny") {
        throw new AgentdError("permission_denied", `the edited call is denied by ${rule === null ? "the default decision" : `the rule "${rule}"`}; the confirmation is still pending`);
      }
    }
    // A rule that would not compile (too long, too many) is not remembered: the answer still counts.
    let remembered = answer.remember ? rememberedRule(pending.toolName, args) : "";
    if (remembered && !session.addRule(approve ? "allow" : "deny", remembered)) remembered = "";
    const resolution: Resolution = {
      outcome: approve ? "approved" : "rejected",
      runs: approve,
      resolvedBy: `client:${caller.owner || "admin"}`,
      reason: answer.reason,
      editedArgumentsJson: approve ? answer.editedArgumentsJson : undefined,
      resolvedAtMs: Date.now(),
    };
    session.confirmations.resolve(id, resolution);
    return { resolution, callId: pending.callId, rememberedRule: remembered };
  }

  /** The confirmations a session waits for, and with `includeDescendants` its children's too. */
  listPendingConfirmations(caller: Caller, sessionId: string, includeDescendants: boolean): PendingConfirmation[] {
    const session = this.owned(caller, sessionId);
    const sessions = includeDescendants ? this.registry.descendantsOf(session) : [session];
    return sessions.flatMap((s) => s.confirmations.list());
  }

  /** The tools a session's model can call. */
  listTools(caller: Caller, sessionId: string): Array<{ name: string; description: string; inputSchema: Record<string, unknown>; readOnly: boolean }> {
    this.owned(caller, sessionId);
    return this.options.tools.list().map((tool) => ({
      name: tool.name,
      description: tool.description,
      inputSchema: tool.inputSchema,
      readOnly: tool.readOnly,
    }));
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

  /** The session, if the caller may see it; NOT_FOUND otherwise, so ids of others do not leak. */
  private owned(caller: Caller, sessionId: string, field = "session_id"): Session {
    const session = this.registry.find(checkId(field, sessionId));
    if (!session || (!isAdmin(caller) && session.owner !== caller.owner)) throw notFound(`session ${sessionId} not found`);
    return session;
  }

  /** The owner a new session gets: a user's own; an admin's choice, else its own, else "default". */
  private ownerFor(caller: Caller, requested: string): string {
    if (isAdmin(caller)) return requested || caller.owner || "default";
    if (requested !== "" && requested !== caller.owner) {
      throw new AgentdError("permission_denied", `only an admin may create sessions for another owner; you are "${caller.owner}"`);
    }
    return caller.owner;
  }

  private async create(
    owner: string,
    parentId: string | null,
    config: SessionConfig,
    options: { workspace: string; ephemeral: boolean; labels: Record<string, string>; named: boolean },
  ): Promise<Session> {
    this.registry.checkCapacity(owner);
    if (config.model) this.models.validate(config.model);
    if (options.named) this.checkNotShared(owner, options.workspace);
    const id = randomUUID();
    const workspace = options.workspace || this.workspaces.defaultFor(id);
    await mkdir(workspace, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
      throw invalidArgument(`workspace ${workspace} cannot be created (${error.code ?? "failed"})`);
    });
    // Checked again now that it exists: a symlink put in its way meanwhile would show here.
    if (options.named) await this.workspaces.check(workspace);
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

  private checkEditedArguments(toolName: string, json: string): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      throw invalidArgument("edited_arguments_json is not valid JSON; the confirmation is still pending");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw invalidArgument("edited_arguments_json must be a JSON object; the confirmation is still pending");
    }
    const problems = this.options.tools.has(toolName) ? this.options.tools.validate(toolName, value) : [];
    if (problems.length > 0) {
      throw invalidArgument(`edited_arguments_json does not fit ${toolName}'s schema: ${problems.join("; ")}; the confirmation is still pending`);
    }
    return value as Record<string, unknown>;
  }

  /** A workspace one owner names must not overlap another owner's: they would read each other's files. */
  private checkNotShared(owner: string, workspace: string): void {
    for (const session of this.registry.all()) {
      if (session.owner === owner) continue;
      const other = session.workspace;
      if (other === workspace || isInside(other, workspace) || isInside(workspace, other)) {
        throw new AgentdError("permission_denied", `workspace ${workspace} overlaps a workspace of another owner's session; choose another`);
      }
    }
  }

  /** A live session for a record, whose changes are written in the background unless ephemeral. */
  private track(record: SessionRecord): Session {
    return new Session(
      record,
      (changed) => {
        if (!changed.ephemeral && changed.state !== "closed") this.persister.markDirty(changed.id, () => changed.toRecord());
      },
      (session) => this.persister.flushSession(session.id),
    );
  }
}

/**
 * A child may tighten its parent's policy, never loosen it: the parent's deny rules stay, its default
 * decision is the floor, and if the parent asks people, so does the child.
 */
function narrowedTo(parent: Readonly<SessionConfig>, child: SessionConfig): SessionConfig {
  const strictness = { allow: 0, ask: 1, deny: 2 } as const;
  const p = parent.permissions;
  const c = child.permissions;
  return {
    ...child,
    permissions: {
      ...c,
      deny: [...new Set([...p.deny, ...c.deny])],
      defaultDecision: strictness[c.defaultDecision] >= strictness[p.defaultDecision] ? c.defaultDecision : p.defaultDecision,
    },
    confirmation: { ...child.confirmation, enabled: child.confirmation.enabled || parent.confirmation.enabled },
  };
}
