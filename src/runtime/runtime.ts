import { randomUUID } from "node:crypto";
import { mkdir, realpath } from "node:fs/promises";
import path from "node:path";
import type { CancelReason } from "../agent/cancellation.js";
import type { RuntimeConfig } from "../config/config.js";
import { AgentdError, failedPrecondition, invalidArgument, notFound } from "../errors.js";
import { argumentsObjectOrEmpty } from "../llm/provider.js";
import type { PendingConfirmation, Resolution } from "../policy/confirmations.js";
import { rememberedRule } from "../policy/rules.js";
import { LlmClientFactory } from "../llm/factory.js";
import { costOf, priceOf } from "../llm/prices.js";
import { modelAccess } from "../llm/model-access.js";
import type { Logger } from "../logging.js";
import { mergeConfig } from "../session/config-merge.js";
import { defaultSessionConfig, newSessionRecord } from "../session/new-session.js";
import { decodePageToken, encodePageToken, fitToBudget, pageSize, type PageBudget } from "../session/paging.js";
import { SessionRegistry } from "../session/registry.js";
import { restoreRecords, type SuspendedTurn } from "../session/restore.js";
import { Session, type SessionView } from "../session/session.js";
import type { ChildPolicy, Message, SessionConfig, SessionConfigPatch, UsageTotals } from "../session/types.js";
import { Persister } from "../store/persister.js";
import { DEFAULT_EVENT_LOG_LIMITS, EventMemory, RecentEvents } from "../events/log.js";
import type { SessionRecord } from "../store/record.js";
import { FencedError, type LoadResult, type SessionStore } from "../store/types.js";
import type { ClusterMembership } from "../cluster/membership.js";
import type { ToolRegistry } from "../tools/registry.js";
import type { ToolSource } from "../tools/types.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import { parseMcpServers } from "../mcp/config.js";
import type { McpTransportSpec } from "../mcp/types.js";
import type { Skill } from "../skills/types.js";
import type { AgentDefinition } from "../subagents/types.js";
import { Capabilities } from "./capabilities.js";
import { DefinitionsService, type DefinitionSource, type Visible } from "./definitions-service.js";
import { McpService, type VisibleServer } from "./mcp-service.js";
import { SkillsService } from "./skills-service.js";
import { AGENT_DEFINITIONS, type SubagentHost } from "./subagents.js";
import { isAdmin, type Caller } from "./caller.js";
import { checkApiKey, checkChars, checkConfigPatch, checkId, checkLabels, checkOwner, checkText, INPUT_LIMITS } from "./input-limits.js";
import { ModelClients } from "./model-clients.js";
import { TurnRunner, turnEvents, type StartTurnOptions, type TurnHandle } from "./turn-runner.js";
import type { Observable } from "rxjs";
import type { SessionEvent } from "../events/types.js";
import { WorkspacePolicy } from "./workspace-policy.js";
import { subscribeToSession, type SubscribeOptions, type SubscriptionItem } from "../events/subscribe.js";
import { isInside } from "../util/paths.js";
import { ContextService, WORKSPACE_NOT_RESTORED } from "../context/service.js";
import type { CompactionReport, ContextUsage, MessageMark } from "../context/types.js";
import { OwnerSpending, type OwnerUsage } from "../costs/owner-spending.js";
import { checkSessionBudget } from "../agent/loop.js";
import { checkPricedForBudget } from "../costs/priced-model.js";

export interface RuntimeOptions {
  config: RuntimeConfig;
  store: SessionStore;
  tools: ToolRegistry;
  logger: Logger;
  /** Replaces the factory built from the configuration's model access rules (tests). */
  llm?: LlmClientFactory;
  /**
   * On a node of a cluster: nothing is restored at start; a session's tree is brought here when this
   * node takes its lease (placeSession), and dropped when another node has taken it.
   */
  cluster?: ClusterMembership;
  /** Sees every session's events as they go out (metrics); called on the turn's path, so it must be quick. */
  observe?: (session: SessionView, event: SessionEvent) => void;
}

/** What the runtime holds now, for gauges read when they are scraped. */
export interface RuntimeStats {
  sessionsByState: Record<string, number>;
  pendingConfirmations: number;
  /** Sessions whose latest state has not reached the store. */
  unpersistedSessions: number;
  /** How long the oldest change not yet in the store has waited, in seconds (0: all stored). */
  persistenceLagSeconds: number;
  /** Bytes of recent events kept in memory for clients that re-attach. */
  eventMemoryBytes: number;
}

/** Where a session is served from, in a cluster. */
export type SessionPlace = { kind: "here" } | { kind: "elsewhere"; address: string; nodeId: string };

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

/** A tool as ListTools shows it. */
export interface ToolDescription {
  name: string;
  description: string;
  inputSchema: Record<string, unknown>;
  readOnly: boolean;
  source: ToolSource;
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
  private readonly skills: SkillsService;
  private readonly agents: DefinitionsService<AgentDefinition>;
  private readonly mcp: McpService;
  private readonly capabilities: Capabilities;
  private readonly context: ContextService;
  /** What each owner spent (every model call, written to the store's ledger), and their budgets. */
  private readonly spending: OwnerSpending;
  /** The memory every session's recent events share. */
  private readonly eventMemory: EventMemory;
  /** Trees being loaded into this node, so that calls arriving together load each once. */
  private readonly adopting = new Map<string, Promise<void>>();
  /** Trees being dropped from this node: an adoption of one waits until it is gone. */
  private readonly evicting = new Map<string, Promise<void>>();

  private constructor(
    private readonly options: RuntimeOptions,
    private readonly workspaces: WorkspacePolicy,
    roots: { skillsDir: string; skillRoots: string[]; agentsDir: string; agentRoots: string[]; mcpCwd: string },
  ) {
    const { config, store, tools, logger } = options;
    this.registry = new SessionRegistry(config.limits);
    this.eventMemory = new EventMemory(config.persistence.recentEventsMemoryBytes);
    this.persister = new Persister(store, config.persistence, {
      onFailure: (sessionId, error, attempts) => {
        if (error instanceof FencedError) return this.fenced(sessionId, error);
        logger.error({ sessionId, attempts, err: error }, "writing session to the store failed; will retry");
        this.registry.find(sessionId)?.reportPersistenceFailure(error.message, attempts);
      },
      onSuccess: (sessionId) => {
        logger.info({ sessionId }, "session written to the store after earlier failures");
        this.registry.find(sessionId)?.clearPersistenceError();
      },
    });
    this.spending = new OwnerSpending(store, config.budgets, {
      onFailure: (error, rows) => logger.error({ err: error, rows }, "writing owners' spending to the store failed; will retry"),
      onRecovery: () => logger.info("owners' spending written to the store after earlier failures"),
      onReadFailure: (error) => logger.error({ err: error }, "reading owners' spending from the store failed"),
    });
    const budgeted = config.budgets.perOwnerUsd > 0 || Object.values(config.budgets.owners).some((usd) => usd > 0);
    const access = modelAccess({
      allowedBaseUrls: config.models.allowedBaseUrls,
      allowedApiKeyEnvs: config.models.allowedApiKeyEnvs,
      keyedEndpoints: config.models.keyedEndpoints,
      scriptsDir: config.sandbox.scriptsDir || path.join(config.dataDir, "scripts"),
      trusted: config.sessionDefaults.model,
    });
    this.models = new ModelClients(options.llm ?? new LlmClientFactory({ access }));
    const lineage = (session: Session) => this.registry.lineage(session);
    this.skills = new SkillsService({
      dir: roots.skillsDir,
      allowedRoots: roots.skillRoots,
      lineage,
      find: (id) => this.registry.find(id),
      logger,
    });
    this.agents = new DefinitionsService(AGENT_DEFINITIONS, {
      dir: roots.agentsDir,
      allowedRoots: roots.agentRoots,
      lineage,
      logger,
      isVisibleSkill: (session, name) => this.skills.registry.visible(session).some((v) => v.item.name === name),
    });
    this.mcp = new McpService({
      allowedCommands: config.mcp.allowedCommands,
      allowedPrivateUrls: config.mcp.allowedPrivateUrls,
      maxServersPerSession: config.mcp.maxServersPerSession,
      callTimeoutMs: config.mcp.callTimeoutMs,
      clientServerCwd: roots.mcpCwd,
      backoff: { baseMs: config.mcp.backoffBaseMs, maxMs: config.mcp.backoffMaxMs },
      connectTimeoutMs: config.mcp.connectTimeoutMs,
      lineage,
      logger,
    });
    this.capabilities = new Capabilities(tools, {
      skills: this.skills,
      agents: this.agents,
      mcp: this.mcp,
      lineage,
      subagents: config.subagents,
      host: this.subagentHost(),
    });
    this.context = new ContextService({
      clientFor: (session, apiKey) => this.models.clientFor(session, apiKey),
      environment: (session) => ({ systemPrompt: this.capabilities.systemPrompt(session), tools: this.capabilities.toolset(session).definitions() }),
      costOf: (session, usage) => costOf(usage, priceOf(session.config.model, config.prices)),
      checkBudget: async (session) => {
        checkSessionBudget(session.config.limits.budgetUsd, session.usage.costUsd ?? 0);
        if (!budgeted) return;
        checkPricedForBudget(session.config.model, session.owner, this.spending.budgetOf(session.owner), config.prices);
        await this.spending.check(session.owner);
      },
      logger,
    });
    this.turns = new TurnRunner({
      models: this.models,
      capabilities: this.capabilities,
      context: this.context,
      workspaces,
      maxConcurrentTurnsPerOwner: config.limits.maxConcurrentTurnsPerOwner,
      logger,
      prices: config.prices,
      ownerBudgets: budgeted ? this.spending : undefined,
      tracing: config.tracing.enabled,
      traceContent: config.tracing.enabled && config.tracing.recordContent,
    });
  }

  /** Restores loaded sessions: their MCP servers, then the turns that wait for a person. */
  private async restore(loaded: LoadResult): Promise<void> {
    const { logger } = this.options;
    const suspendedTurns: Array<[Session, SuspendedTurn]> = [];
    const restored = restoreRecords(loaded, this.registry, (record) => this.track(record), logger, (session, suspended) => {
      suspendedTurns.push([session, suspended]);
    });
    await this.recoverSpending(restored);
    // MCP servers first: a resumed turn may be about to call one of their tools.
    const withServers = restored.filter((session) => session.extensions.list("mcpServers").length > 0);
    await Promise.all(withServers.map((session) => this.mcp.restore(session)));
    for (const [session, suspended] of suspendedTurns) {
      logger.info({ sessionId: session.id, confirmationId: suspended.confirmation.id }, "resuming a turn that waits for a confirmation");
      try {
        this.turns.resume(session, suspended);
      } catch (error) {
        // One session that cannot resume must not keep the server (or the tree) from starting.
        logger.error({ sessionId: session.id, err: error }, "cannot resume the turn; its calls stay unanswered until the next turn");
      }
    }
  }

  stats(): RuntimeStats {
    const sessionsByState: Record<string, number> = {};
    let pendingConfirmations = 0;
    for (const session of this.registry.all()) {
      sessionsByState[session.state] = (sessionsByState[session.state] ?? 0) + 1;
      pendingConfirmations += session.confirmations.list().length;
    }
    return { sessionsByState, pendingConfirmations, unpersistedSessions: this.persister.pendingCount(), persistenceLagSeconds: this.persister.oldestPendingMs() / 1000, eventMemoryBytes: this.eventMemory.bytes };
  }

  /**
   * What a session and its descendants spent. A subagent's spending is already in the session that
   * ran it (the task tool adds it to the calling turn), so subagents are not counted again.
   */
  treeUsage(caller: Caller, sessionId: string): UsageTotals {
    const root = this.owned(caller, sessionId);
    const total = { inputTokens: 0, outputTokens: 0, costUsd: 0 };
    for (const session of this.registry.descendantsOf(root)) {
      if (session !== root && session.agent !== "") continue;
      total.inputTokens += session.usage.inputTokens;
      total.outputTokens += session.usage.outputTokens;
      total.costUsd += session.usage.costUsd ?? 0;
    }
    return total;
  }

  /**
   * What an owner spent in the current budget period, over all their sessions (destroyed and
   * ephemeral ones included, on every node of a cluster), and their budget. "" names the caller;
   * only an admin may name another owner.
   */
  async ownerUsage(caller: Caller, owner: string): Promise<OwnerUsage> {
    checkOwner(owner);
    if (!isAdmin(caller) && owner !== "" && owner !== caller.owner) {
      throw new AgentdError("permission_denied", `only an admin may read another owner's spending; you are "${caller.owner}"`);
    }
    return this.spending.usageOf(owner || caller.owner || "default");
  }

  /** Whether this node runs the session now (without a cluster: whether it exists). */
  runsHere(sessionId: string): boolean {
    return this.registry.find(sessionId) !== undefined;
  }

  /**
   * Where a call on this session is served. Without a cluster, always here. In a cluster, here when
   * this node runs the session's tree or has just taken its lease (the tree is loaded first), else
   * on the node that holds it. A session no node has stored is "here" too: the call then says
   * NOT_FOUND as on a single server, and so is another owner's (no lease is taken for a caller who
   * may not see the session). `unreachableNode`: a holder that just refused a connection,
   * presumed dead: its lease is waited out and the tree taken over.
   */
  async placeSession(caller: Caller, sessionId: string, unreachableNode: string | null = null): Promise<SessionPlace> {
    const cluster = this.options.cluster;
    if (!cluster || sessionId === "" || this.registry.find(sessionId)) return { kind: "here" };
    checkId("session_id", sessionId);
    const placement = await cluster.place(sessionId, { owner: isAdmin(caller) ? null : caller.owner, unreachable: unreachableNode });
    if (placement.kind === "missing") return { kind: "here" };
    if (placement.kind === "draining") throw new AgentdError("unavailable", "this node is shutting down and takes on no more sessions; call another node", { retryable: true });
    if (placement.kind === "elsewhere") return { kind: "elsewhere", address: placement.address, nodeId: placement.nodeId };
    await this.adoptTree(placement.rootId);
    return { kind: "here" };
  }

  /**
   * What the sessions' records hold of their own spending beyond their marks in the ledger (the
   * ledger is written in batches; a crash may have kept the session's write and lost the ledger's)
   * goes into the ledger now, on the day of the session's last change.
   */
  private async recoverSpending(sessions: readonly Session[]): Promise<void> {
    const spenders = sessions.filter((session) => session.spent !== null);
    if (spenders.length === 0) return;
    const marks = await this.options.store.marksOf(spenders.map((session) => session.id)).catch((error: unknown) => {
      this.options.logger.error({ err: error }, "reading the spend ledger's marks failed; spending a crash kept from it is not added back");
      return null;
    });
    if (!marks) return;
    let recovered = 0;
    for (const session of spenders) {
      const total = session.spent!;
      const mark = marks.get(session.id);
      const missing = {
        inputTokens: Math.max(0, total.inputTokens - (mark?.inputTokens ?? 0)),
        outputTokens: Math.max(0, total.outputTokens - (mark?.outputTokens ?? 0)),
        costUsd: Math.max(0, (total.costUsd ?? 0) - (mark?.costUsd ?? 0)),
      };
      const at = new Date(session.updatedAt);
      // A mark ahead of the record (the ledger was written, the session's last save was not): the
      // session did spend that, and its running total goes on from there.
      if (mark) session.raiseSpent(mark);
      if (missing.inputTokens === 0 && missing.outputTokens === 0 && missing.costUsd === 0) continue;
      const now = session.spent!;
      this.spending.record(session.owner, missing, { sessionId: session.id, inputTokens: now.inputTokens, outputTokens: now.outputTokens, costUsd: now.costUsd ?? 0 }, Number.isNaN(at.getTime()) ? undefined : at);
      recovered++;
    }
    if (recovered > 0) this.options.logger.info({ sessions: recovered }, "added to the spend ledger what sessions spent before a crash and the ledger had not kept");
  }

  /** Loads a tree whose lease this node has taken (once, however many calls wait for it). */
  private adoptTree(rootId: string): Promise<void> {
    if (this.registry.find(rootId)) return Promise.resolve();
    let adopting = this.adopting.get(rootId);
    if (!adopting) {
      adopting = (async () => {
        await this.evicting.get(rootId);
        const loaded = await this.options.cluster!.loadTree(rootId);
        await this.restore(loaded);
        this.options.logger.info({ rootId, sessions: loaded.records.length }, "session tree taken over from the store");
      })().finally(() => this.adopting.delete(rootId));
      this.adopting.set(rootId, adopting);
    }
    return adopting;
  }

  /**
   * Drops trees another node runs now (this one lost their leases), or that this one hands back
   * (`handBack`, a drain: the lease is released after the last write): their turns stop here,
   * nothing of them is written any more, and nothing is deleted from the store.
   */
  private async evictTrees(rootIds: string[], handBack = false): Promise<void> {
    await Promise.all(rootIds.map((rootId) => this.evictTree(rootId, handBack)));
  }

  private evictTree(rootId: string, handBack: boolean): Promise<void> {
    const running = this.evicting.get(rootId);
    if (running) return running;
    const cluster = this.options.cluster;
    const epoch = cluster?.epochOf(rootId);
    const work = (async () => {
      const root = this.registry.find(rootId);
      const sessions = root ? this.registry.descendantsOf(root) : [];
      // Writing stops first: a turn cancelled below must not write under a lease that is gone.
      for (const session of sessions) this.persister.forget(session.id);
      if (root) await this.registry.destroy(rootId, "cascade");
      for (const session of sessions) {
        this.persister.forget(session.id);
        this.models.forget(session.id);
        void this.mcp.closeSession(session.id);
      }
      if (handBack && epoch !== undefined) {
        // The next holder compares the sessions' spending with the ledger's marks: they must be written first.
        await this.spending.flush();
        await cluster?.release(rootId, epoch).catch((error: unknown) => this.options.logger.warn({ rootId, err: error }, "could not hand back a lease; it runs out by itself"));
      }
      cluster?.forgetTree(rootId, sessions.map((session) => session.id));
    })().finally(() => this.evicting.delete(rootId));
    this.evicting.set(rootId, work);
    return work;
  }

  /** A write this node made was refused: another node runs the tree now, unless the refusal is older than the lease this node holds. */
  private fenced(sessionId: string, error: FencedError): void {
    this.persister.forget(sessionId);
    const held = this.options.cluster?.epochOf(error.rootId);
    if (held !== undefined && held !== error.epoch) return;
    this.options.logger.warn({ sessionId, rootId: error.rootId, epoch: error.epoch }, "fenced: another node holds this session's tree now; this node's write was refused and the tree is dropped here");
    void this.evictTrees([error.rootId]);
  }

  /**
   * Hands back the leases of the trees with no running turn (their state written first), so other
   * nodes take them at once; returns how many trees still run a turn. For a node that drains.
   */
  async releaseIdleTrees(): Promise<number> {
    const cluster = this.options.cluster;
    if (!cluster) return 0;
    let busy = 0;
    for (const rootId of cluster.roots()) {
      const root = this.registry.find(rootId);
      const tree = root ? this.registry.descendantsOf(root) : [];
      if (tree.some((session) => session.activeTurnId !== null)) {
        busy++;
        continue;
      }
      const written = await Promise.all(tree.map((session) => this.persistNow(session.id)));
      if (written.includes(false)) {
        busy++;
        continue;
      }
      await this.evictTrees([rootId], true);
    }
    return busy;
  }

  /** A runtime with every stored session restored. */
  static async open(options: RuntimeOptions): Promise<Runtime> {
    const { dataDir, sandbox, auth, tls, audit } = options.config;
    const operatorFiles = [auth.tokensFile, auth.jwt?.publicKeyFile ?? "", tls.certFile, tls.keyFile, tls.clientCaFile, audit.file];
    const workspaces = await WorkspacePolicy.create(dataDir, sandbox.allowedWorkspaceRoots, operatorFiles.filter((f) => f !== ""));
    // The default scripts folder exists from the start, so an operator sees where scripts go.
    if (sandbox.scriptsDir === "") await mkdir(path.join(dataDir, "scripts"), { recursive: true });
    const { skills, agents } = options.config;
    const skillsDir = path.resolve(skills.dir || path.join(dataDir, "skills"));
    const agentsDir = path.resolve(agents.dir || path.join(dataDir, "agents"));
    // The default folders exist from the start, so an operator sees where skills and agents go.
    if (skills.dir === "") await mkdir(skillsDir, { recursive: true });
    if (agents.dir === "") await mkdir(agentsDir, { recursive: true });
    // Where clients' stdio MCP servers run: empty, and the server's alone.
    const mcpCwd = path.resolve(dataDir, "mcp-servers");
    await mkdir(mcpCwd, { recursive: true, mode: 0o700 });
    const runtime = new Runtime(options, workspaces, {
      mcpCwd: await realpath(mcpCwd),
      skillsDir,
      skillRoots: await resolvedRoots([skillsDir, ...skills.allowedRoots]),
      agentsDir,
      agentRoots: await resolvedRoots([agentsDir, ...agents.allowedRoots]),
    });
    await runtime.skills.registry.reload();
    await runtime.agents.reload();
    runtime.mcp.startGlobal(parseMcpServers(options.config.mcpServers, "mcpServers"));
    // On a node of a cluster, sessions come with their trees' leases (placeSession), not at start.
    if (options.cluster) options.cluster.onLost = (rootIds) => void runtime.evictTrees(rootIds);
    else await runtime.restore(await options.store.loadAll());
    return runtime;
  }

  async createSession(caller: Caller, options: CreateSessionOptions): Promise<SessionView> {
    if (this.options.cluster?.draining) {
      throw new AgentdError("unavailable", "this node is shutting down and takes on no new sessions; call another node", { retryable: true });
    }
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

  /**
   * ListSessions as a client sees it: on a node of a cluster, from the store (every node's sessions;
   * the ones this node runs as they are now), else what listSessions gives.
   */
  async listSessionsEverywhere(
    caller: Caller,
    options: { owner: string; budget?: PageBudget<SessionView> } & Page,
  ): Promise<{ sessions: SessionView[]; nextPageToken: string }> {
    const cluster = this.options.cluster;
    if (!cluster) return this.listSessions(caller, options);
    checkOwner(options.owner);
    checkChars("page_token", options.pageToken, INPUT_LIMITS.pageTokenChars);
    if (!isAdmin(caller) && options.owner !== "" && options.owner !== caller.owner) {
      throw new AgentdError("permission_denied", `only an admin may list another owner's sessions; you are "${caller.owner}"`);
    }
    const owner = isAdmin(caller) ? options.owner : caller.owner;
    const size = pageSize(options.pageSize, 50);
    const after = decodePageToken("sessions", options.pageToken);
    const stored = await cluster.listStored(owner, after, size + 1);
    const views = stored.map((view) => this.registry.find(view.id) ?? view);
    const page = [...fitToBudget(views.slice(0, size), options.budget)];
    const last = page.at(-1);
    return { sessions: page, nextPageToken: views.length > page.length && last ? encodePageToken("sessions", `${last.createdAt}|${last.id}`) : "" };
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
    return this.destroyTree(sessionId, policy);
  }

  private async destroyTree(sessionId: string, policy: ChildPolicy = "cascade"): Promise<{ destroyed: string[]; orphaned: string[] }> {
    const { destroyed, orphaned } = await this.registry.destroy(sessionId, policy);
    // Their turns have ended: what they spent goes into the ledger before their records (and the
    // running totals a restart would add back from) are gone.
    await this.spending.flush();
    for (const session of destroyed) {
      this.models.forget(session.id);
      void this.mcp.closeSession(session.id);
      if (!session.ephemeral) this.persister.markDeleted(session.id);
    }
    // Children made top-level start trees of their own, with leases of their own.
    for (const child of orphaned) if (!child.ephemeral) this.options.cluster?.created(child.id);
    // Acknowledged means gone from the store too: a destroyed session never comes back after a
    // crash, nor on another node of a cluster.
    const stored = [...destroyed, ...orphaned].filter((session) => !session.ephemeral);
    const written = await Promise.all(stored.map((session) => this.persister.flushSession(session.id)));
    const ids = destroyed.map((session) => session.id);
    for (const session of destroyed) if (session.parentId === null) this.options.cluster?.forgetTree(session.id, ids);
    if (written.includes(false)) {
      throw new AgentdError("unavailable", "the sessions were destroyed here, but the store has not recorded it yet (the server's log says why; it keeps trying): until it has, they may come back after a crash", { retryable: true });
    }
    this.options.logger.debug({ sessionId, destroyed: destroyed.length, orphaned: orphaned.length }, "session destroyed");
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

  /**
   * Starts a turn that belongs to the server: nobody needs to follow it. The reply's
   * `afterSequence` is where a Subscribe that wants the whole turn starts.
   */
  startServerTurn(caller: Caller, sessionId: string, prompt: string, options: StartTurnOptions = {}): { turnId: string; afterSequence: number } {
    const afterSequence = this.owned(caller, sessionId).lastSequence;
    const { turnId } = this.startTurn(caller, sessionId, prompt, options);
    return { turnId, afterSequence };
  }

  /** A session's events after a cursor, then its live ones: see subscribeToSession. */
  subscribe(caller: Caller, sessionId: string, options: SubscribeOptions): Observable<SubscriptionItem> {
    const session = this.owned(caller, sessionId);
    if (!Number.isSafeInteger(options.afterSequence) || options.afterSequence < 0) {
      throw new AgentdError("out_of_range", "after_sequence must be a sequence number of this session (0 or more)");
    }
    return subscribeToSession(session, options, {
      readStored: (id, after, limit) => this.options.store.readEvents(id, after, limit),
      flush: (id) => this.persistNow(id),
      descendants: (root) => this.registry.descendantsOf(root),
      added: (listener) => {
        const subscription = this.registry.added$.subscribe(listener);
        return () => subscription.unsubscribe();
      },
      isDescendant: (session, root) => this.registry.lineage(session).includes(root),
    });
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

  /** A page of the transcript, with how each message stands towards the model's context (`marks`, one per message). */
  messages(
    caller: Caller,
    sessionId: string,
    page: Page & { budget?: PageBudget<Message> },
  ): { messages: readonly Message[]; marks: MessageMark[]; nextPageToken: string } {
    const session = this.owned(caller, sessionId);
    checkChars("page_token", page.pageToken, INPUT_LIMITS.pageTokenChars);
    const size = pageSize(page.pageSize, 100);
    const cursor = decodePageToken("messages", page.pageToken);
    const offset = cursor === null ? 0 : Number(cursor);
    if (!Number.isInteger(offset) || offset < 0) throw invalidArgument("page_token is not valid here");
    const messages = fitToBudget(session.messagesPage(offset, size), page.budget);
    const next = offset + messages.length;
    const marks = this.context.marks(session, offset, messages.length);
    return { messages, marks, nextPageToken: next < session.messageCount ? encodePageToken("messages", String(next)) : "" };
  }

  /**
   * Answers a confirmation. Edited arguments must fit the tool's schema (INVALID_ARGUMENT, and the
   * confirmation stays pending); `remember` adds an allow (or deny) rule for the tool or command
   * prefix. NOT_FOUND for an unknown id; FAILED_PRECONDITION, saying how, for one already decided.
   */
  confirmToolCall(caller: Caller, sessionId: string, answer: ConfirmAnswer): { resolution: Resolution; callId: string; rememberedRule: string } {
    const id = checkChars("confirmation_id", answer.confirmationId, INPUT_LIMITS.idChars);
    if (id === "") throw invalidArgument("confirmation_id is required");
    // A subagent's confirmation may be answered through its parent (its stream is where it was seen).
    const named = this.owned(caller, sessionId);
    const session = this.registry.descendantsOf(named).find((s) => s.confirmations.get(id) || s.confirmations.decision(id)) ?? named;
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
      args = this.checkEditedArguments(session, pending.toolName, answer.editedArgumentsJson);
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

  /** The tools a session's model can call now: built-in, skill and task, and its MCP servers'. */
  listTools(caller: Caller, sessionId: string): ToolDescription[] {
    const session = this.owned(caller, sessionId);
    return this.capabilities
      .toolset(session)
      .list()
      .map((tool) => ({
        name: tool.name,
        description: tool.description,
        inputSchema: tool.inputSchema,
        readOnly: tool.readOnly,
        source: tool.source ?? { kind: "builtin" },
      }));
  }

  // --- Skills -----------------------------------------------------------------------------------

  /** Loads the server's skills folder again; admins only. */
  async reloadSkills(caller: Caller): Promise<{ skills: Visible<Skill>[]; problems: readonly DefinitionProblem[] }> {
    this.adminOnly(caller, "reload the server's skills");
    const { items, problems } = await this.skills.registry.reload();
    return { skills: items.map(asGlobal), problems };
  }

  loadSkill(caller: Caller, sessionId: string, source: DefinitionSource): Promise<Visible<Skill>> {
    return this.skills.registry.load(this.owned(caller, sessionId), source);
  }

  unloadSkill(caller: Caller, sessionId: string, name: string): void {
    this.skills.registry.unload(this.owned(caller, sessionId), checkChars("name", name, INPUT_LIMITS.definitionNameChars));
  }

  /** A session's skills (own, inherited, global); with no session, the global ones and their load problems. */
  listSkills(caller: Caller, sessionId: string): { skills: Visible<Skill>[]; problems: readonly DefinitionProblem[] } {
    if (sessionId === "") {
      return { skills: this.skills.registry.globalList().map((skill) => shownTo(caller, asGlobal(skill))), problems: isAdmin(caller) ? this.skills.registry.problems() : [] };
    }
    return { skills: this.skills.registry.visible(this.owned(caller, sessionId)).map((v) => shownTo(caller, v)), problems: [] };
  }

  getSkill(caller: Caller, sessionId: string, name: string): Visible<Skill> {
    checkChars("name", name, INPUT_LIMITS.definitionNameChars);
    return shownTo(caller, this.skills.registry.find(sessionId === "" ? null : this.owned(caller, sessionId), name));
  }

  // --- Subagent definitions ---------------------------------------------------------------------

  async reloadAgents(caller: Caller): Promise<{ agents: Visible<AgentDefinition>[]; problems: readonly DefinitionProblem[] }> {
    this.adminOnly(caller, "reload the server's subagent definitions");
    const { items, problems } = await this.agents.reload();
    return { agents: items.map(asGlobal), problems };
  }

  loadAgent(caller: Caller, sessionId: string, source: DefinitionSource): Promise<Visible<AgentDefinition>> {
    return this.agents.load(this.owned(caller, sessionId), source);
  }

  unloadAgent(caller: Caller, sessionId: string, name: string): void {
    this.agents.unload(this.owned(caller, sessionId), checkChars("name", name, INPUT_LIMITS.definitionNameChars));
  }

  listAgents(caller: Caller, sessionId: string): { agents: Visible<AgentDefinition>[]; problems: readonly DefinitionProblem[] } {
    if (sessionId === "") return { agents: this.agents.globalList().map(asGlobal), problems: isAdmin(caller) ? this.agents.problems() : [] };
    return { agents: this.agents.visible(this.owned(caller, sessionId)), problems: [] };
  }

  // --- MCP servers ------------------------------------------------------------------------------

  addMcpServer(caller: Caller, sessionId: string, name: string, spec: McpTransportSpec): Promise<VisibleServer> {
    return this.mcp.add(this.owned(caller, sessionId), name, spec);
  }

  removeMcpServer(caller: Caller, sessionId: string, name: string): Promise<void> {
    return this.mcp.remove(this.owned(caller, sessionId), checkChars("name", name, INPUT_LIMITS.mcpServerNameChars));
  }

  /** A session's MCP servers (own, inherited, global) with their state; with no session, the global ones. */
  listMcpServers(caller: Caller, sessionId: string): VisibleServer[] {
    const servers = this.mcp.visible(sessionId === "" ? null : this.owned(caller, sessionId));
    // The operator's command lines and URLs may hold tokens: users see which program or host only.
    return isAdmin(caller) ? servers : servers.map((s) => (s.scope === "global" ? { ...s, status: { ...s.status, target: briefTarget(s.status.target, s.status.transport) } } : s));
  }

  // --- Context: accounting, compaction, clear, rewind and fork -------------------------------------

  getContextUsage(caller: Caller, sessionId: string): Promise<ContextUsage> {
    return this.context.usage(this.owned(caller, sessionId));
  }

  /** Undoes the session's last compaction (see ContextService.undoCompaction). */
  async undoCompaction(caller: Caller, sessionId: string): Promise<ContextUsage> {
    const session = this.owned(caller, sessionId);
    await this.context.undoCompaction(session);
    return this.context.usage(session);
  }

  /** Summarises the older part of the context (or drops it); FAILED_PRECONDITION while a turn runs. */
  async compactSession(caller: Caller, sessionId: string, options: { instructions: string; apiKey: string }): Promise<{ report: CompactionReport; usage: ContextUsage }> {
    const session = this.owned(caller, sessionId);
    checkText("instructions", options.instructions, INPUT_LIMITS.compactInstructionsBytes);
    if (options.apiKey !== "") checkApiKey(options.apiKey);
    const report = await this.context.compact(session, options);
    return { report, usage: await this.context.usage(session) };
  }

  async clearContext(caller: Caller, sessionId: string): Promise<{ cleared: number; usage: ContextUsage }> {
    const session = this.owned(caller, sessionId);
    const cleared = await this.context.clear(session);
    return { cleared, usage: await this.context.usage(session) };
  }

  /** Takes a turn and the later ones out of the model's context; workspace files are not restored. */
  async rewindSession(caller: Caller, sessionId: string, turnId: string): Promise<{ rewound: number; usage: ContextUsage; note: string }> {
    const session = this.owned(caller, sessionId);
    const rewound = await this.context.rewind(session, checkId("turn_id", turnId));
    return { rewound, usage: await this.context.usage(session), note: WORKSPACE_NOT_RESTORED };
  }

  /**
   * A new session of the same owner, parent, configuration, labels, skills, subagents and MCP
   * servers, whose history is this one's before `turnId` ("" for all of it). It shares the workspace.
   */
  async forkSession(caller: Caller, sessionId: string, turnId: string): Promise<{ session: SessionView; messagesCopied: number; note: string }> {
    const source = this.owned(caller, sessionId);
    const seed = this.context.forkSeed(source, turnId === "" ? "" : checkId("turn_id", turnId));
    const labels = { ...source.labels };
    if (Object.keys(labels).length < INPUT_LIMITS.labelCount) labels["agentd.fork_of"] = source.id;
    const fork = await this.create(source.owner, source.parentId, structuredClone(source.config) as SessionConfig, {
      workspace: source.workspace,
      ephemeral: source.ephemeral,
      labels,
      named: false,
      ...(source.agent ? { agent: source.agent } : {}),
      seed: { messages: seed.messages, context: seed.context, scriptSteps: source.scriptProgress.steps(), extensions: source.extensions.toRecord() },
    });
    await this.mcp.restore(fork);
    this.options.logger.info({ sessionId: fork.id, forkOf: source.id, turnId, messages: seed.messages.length }, "session forked");
    return { session: fork, messagesCopied: seed.messages.length, note: FORK_NOTE };
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

  /** Stops the MCP servers, flushes the store and stops writing; returns how many sessions could not be written. */
  async close(): Promise<number> {
    await this.mcp.closeAll();
    // Turns have stopped: numbering may resume right after the last event, without a reserved gap.
    for (const session of this.registry.all()) if (!session.ephemeral) session.releaseSequenceReservation();
    // A cluster node hands its leases back after its last writes (made under them), before the store closes.
    if (this.options.cluster) {
      await this.persister.flush();
      await this.options.cluster.leave();
    }
    const unwritten = await this.spending.close();
    if (unwritten > 0) this.options.logger.error({ ownerDays: unwritten }, "owners' spending could not be written to the store before stopping; it is lost from their budgets");
    await this.persister.close();
    return this.persister.pendingCount();
  }

  private adminOnly(caller: Caller, what: string): void {
    if (!isAdmin(caller)) throw new AgentdError("permission_denied", `only an admin may ${what}`);
  }

  /** The runtime as the task tool sees it: child sessions that run a definition, and their turns. */
  private subagentHost(): SubagentHost {
    return {
      session: (id) => this.registry.find(id),
      definitions: (session) => this.agents.visible(session),
      depthOf: (session) => this.registry.lineage(session).length - 1,
      createChild: (parent, definition) => {
        const skills = this.skills.registry.visible(parent);
        const preloaded = definition.skills.map((name) => {
          const skill = skills.find((v) => v.item.name === name)?.item;
          if (!skill) throw invalidArgument(`subagent ${definition.name} names the skill "${name}", which this session does not have`);
          return `## Skill: ${skill.name}\n\n${skill.body}`;
        });
        const model = definition.model === "" || !parent.config.model ? undefined : { ...parent.config.model, model: definition.model };
        // A budgeted session's subagent may spend what is left of it, not a budget of its own.
        const budget = parent.config.limits.budgetUsd ?? 0;
        const left = budget - (parent.usage.costUsd ?? 0);
        if (budget > 0 && left <= 0) {
          throw new AgentdError("resource_exhausted", `the session has spent its budget (config.limits.budget_usd = ${budget} USD): the subagent was not started`);
        }
        const patch: SessionConfigPatch = {
          systemPrompt: [definition.systemPrompt, ...preloaded].join("\n\n"),
          tools: definition.tools,
          ...(model ? { model } : {}),
          ...(budget > 0 ? { limits: { budgetUsd: left } } : {}),
        };
        const config = narrowedTo(parent.config, mergeConfig(parent.config, patch));
        const labels = { "agentd.agent": definition.name };
        return this.create(parent.owner, parent.id, config, { workspace: parent.workspace, ephemeral: parent.ephemeral, labels, named: false, agent: definition.name });
      },
      startTurn: (child, prompt, parentTurnId) => this.turns.startChild(child, prompt, parentTurnId),
      taskEnded: (child) => {
        if (this.options.config.subagents.keepSessions) return;
        // Its turn may still be finishing (cancelled with its parent): destroying waits for it.
        void this.destroyTree(child.id).catch((error: unknown) => this.options.logger.warn({ sessionId: child.id, err: error }, "cannot remove a subagent's session"));
      },
    };
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
    options: {
      workspace: string;
      ephemeral: boolean;
      labels: Record<string, string>;
      named: boolean;
      agent?: string;
      /** What a fork starts with instead of an empty history. */
      seed?: Pick<SessionRecord, "messages" | "context" | "scriptSteps" | "extensions">;
    },
  ): Promise<Session> {
    this.registry.checkCapacity(owner);
    if (config.model) this.models.validate(config.model);
    if (options.named) this.checkNotShared(owner, options.workspace);
    const id = randomUUID();
    const workspace = options.workspace || this.workspaces.defaultFor(id);
    // A workspace the client named exists from the start, checked again now that it does (a symlink
    // put in its way meanwhile would show); the server's own is made when a tool first needs it.
    if (options.named) {
      await mkdir(workspace, { recursive: true }).catch((error: NodeJS.ErrnoException) => {
        throw invalidArgument(`workspace ${workspace} cannot be created (${error.code ?? "failed"})`);
      });
      await this.workspaces.check(workspace);
    }
    // Checked again: while the directory was made, another request may have taken the last place,
    // or destroyed the parent.
    this.registry.checkCapacity(owner);
    if (parentId !== null) this.registry.get(parentId);
    const { ephemeral, labels, agent } = options;
    const session = this.track({ ...newSessionRecord({ id, owner, parentId, config, workspace, ephemeral, labels, ...(agent ? { agent } : {}) }), ...options.seed });
    this.registry.add(session);
    if (parentId === null && !ephemeral) this.options.cluster?.created(id);
    const reserved = ephemeral ? null : session.reserveAhead();
    session.markChanged();
    // The reply acknowledges the session: it is on disk first (group-committed with other writes).
    if (!ephemeral && !(await this.persister.flushSession(id))) {
      // Not acknowledged, so not kept: a session that reappears after a crash would surprise the client.
      const refusal = this.persister.lastError(id);
      // The store never had it; its delete is tried until the store answers again.
      await this.destroyTree(id).catch(() => {});
      // A session limit the database checked for the whole cluster is said as such.
      if (refusal instanceof AgentdError && refusal.kind === "resource_exhausted") throw refusal;
      throw new AgentdError("unavailable", "the store could not write the new session (the server's log says why); nothing was created: try again later");
    }
    reserved?.();
    return session;
  }

  private checkEditedArguments(session: Session, toolName: string, json: string): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      throw invalidArgument("edited_arguments_json is not valid JSON; the confirmation is still pending");
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw invalidArgument("edited_arguments_json must be a JSON object; the confirmation is still pending");
    }
    const toolset = this.capabilities.toolset(session);
    const problems = toolset.get(toolName) ? toolset.validate(toolName, value) : [];
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

  /**
   * Writes a session now, whether or not it was marked changed: text deltas mark it only every so
   * often, and a replay that finds a hole must see them in the store before judging it.
   */
  private persistNow(sessionId: string): Promise<boolean> {
    const session = this.registry.find(sessionId);
    if (session) this.scheduleWrite(session);
    return this.persister.flushSession(sessionId);
  }

  /** A background write of the record and the events not yet handed over (drained: each goes to the store once). */
  private scheduleWrite(session: Session): void {
    if (session.ephemeral || session.state === "closed") return;
    this.persister.markDirty(session.id, () => ({ events: session.takeUnpersistedEvents(), record: session.toRecord() }));
  }

  /** A live session for a record, whose changes are written in the background unless ephemeral. */
  private track(record: SessionRecord): Session {
    return new Session(
      record,
      (changed) => this.scheduleWrite(changed),
      (session) => this.persister.flushSession(session.id),
      new RecentEvents(DEFAULT_EVENT_LOG_LIMITS, this.eventMemory),
      this.options.observe ?? null,
      // A stored session's running total goes with it: what a crash keeps from the ledger, a restart adds (recoverSpending).
      (session, usage, total) =>
        this.spending.record(session.owner, usage, session.ephemeral ? undefined : { sessionId: session.id, inputTokens: total.inputTokens, outputTokens: total.outputTokens, costUsd: total.costUsd ?? 0 }),
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

const FORK_NOTE = "the fork works in the same workspace: files were not copied, and changes either session makes there are seen by both";

const asGlobal = <T>(item: T): Visible<T> => ({ item, scope: "global", sessionId: "" });

/** A global skill's folder is where the operator keeps it on the server: admins see it. */
function shownTo(caller: Caller, visible: Visible<Skill>): Visible<Skill> {
  return visible.scope === "global" && !isAdmin(caller) ? { ...visible, item: { ...visible.item, dir: null } } : visible;
}

/** The program of a command line, or the scheme and host of a URL. */
function briefTarget(target: string, transport: string): string {
  if (transport === "stdio") return `${target.split(" ")[0] ?? ""} …`;
  try {
    return `${new URL(target).origin}/…`;
  } catch {
    return "…";
  }
}

/** Folders as the file system names them, so a symlinked root still matches resolved paths. */
async function resolvedRoots(roots: string[]): Promise<string[]> {
  const resolved = await Promise.all(roots.map((root) => realpath(path.resolve(root)).catch(() => null)));
  return resolved.filter((root): root is string => root !== null);
}
