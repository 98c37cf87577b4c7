import { status, type Metadata, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import type { AuthContext } from "@grpc/grpc-js/build/src/auth-context.js";
import type { CancelReason } from "../agent/cancellation.js";
import type { SessionEvent } from "../events/types.js";
import {
  ConfirmDecision,
  Message as MessageProto,
  Session as SessionProto,
  type AgentRuntimeServer,
  type GenerateRequest,
  type GenerateResponse,
  type StreamGenerateRequest,
  type StreamGenerateResponse,
  type WatchTurnRequest,
  type WatchTurnResponse,
  type SubscribeRequest,
  type SubscribeResponse,
  type AgentEvent,
} from "../gen/agentd/v1/runtime.js";
import type { Logger } from "../logging.js";
import type { Caller } from "../runtime/caller.js";
import type { Runtime } from "../runtime/runtime.js";
import type { StartTurnOptions } from "../runtime/turn-runner.js";
import type { AuditLog } from "./audit.js";
import { EventWriter, type WriterLimits } from "./event-writer.js";
import { StreamQuota, type StreamLimits } from "./stream-quota.js";
import { serviceError, statusOf, toServiceError } from "./status.js";
import { invalidArgument } from "../errors.js";
import { toCompactionProto, toContextUsageProto } from "./context-wire.js";
import { toAgentInfo, toDefinitionSource, toMcpServerInfo, toMcpTransportSpec, toProblemProto, toSkillInfo } from "./registries-wire.js";
import {
  toChildPolicy,
  toConfigPatch,
  toMessageProto,
  toOwnerUsageProto,
  toPendingConfirmationProto,
  toResolutionProto,
  toSessionProto,
  toTurnResultProto,
} from "./wire.js";

/** What the handlers need around the runtime: who is calling, where to record it, how big a reply may be. */
export interface ServiceDeps {
  runtime: Runtime;
  logger: Logger;
  /** The edge's one authentication step; rejects with UNAUTHENTICATED. */
  authenticate(call: { metadata: Metadata; getAuthContext(): AuthContext }): Promise<Caller>;
  audit: AuditLog;
  /** Replies are kept under this many bytes (pages end early). */
  maxMessageBytes: number;
  /** How much may wait for one slow reader of a stream before it is cut off. */
  writerLimits?: WriterLimits;
  /** How many Subscribe and WatchTurn streams may be open, per caller and in all. */
  streamLimits?: StreamLimits;
}

/** Who a call that failed authentication is, for the audit log. */
const UNIDENTIFIED: Caller = { owner: "", role: "user", via: "none" };

/** Room kept for the rest of a reply (page token, framing) next to its listed items. */
const REPLY_MARGIN_BYTES = 64 * 1024;

/**
 * The AgentRuntime handlers. Every call is authenticated first, in one place; each handler then
 * translates its request into a Runtime call on behalf of that caller, and the result back. Calls
 * that change something are written to the audit log with their outcome.
 */
export function createAgentRuntimeService(deps: ServiceDeps): AgentRuntimeServer {
  const { runtime, logger, audit } = deps;
  const budget = deps.maxMessageBytes - REPLY_MARGIN_BYTES;
  const streams = new StreamQuota(deps.streamLimits);

  /** A unary handler; `mutates` names the session the call acts on, for the audit log. */
  const unary =
    <Req, Res>(method: string, handle: (request: Req, caller: Caller) => Promise<Res> | Res, mutates?: (request: Req, response?: Res) => string) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      let caller: Caller | undefined;
      deps
        .authenticate(call)
        .then((who) => handle(call.request, (caller = who)))
        .then(
          (response) => {
            // The reply first: the audit line is written in the background anyway.
            callback(null, response);
            if (mutates && caller) {
              // The owner the session belongs to, when it is not the caller (an admin acting for someone).
              const owner = (response as { session?: { owner?: string } } | undefined)?.session?.owner;
              const extra = owner !== undefined && owner !== caller.owner ? { sessionOwner: owner } : undefined;
              audit.record({ method, caller, sessionId: mutates(call.request, response), result: "OK", peer: call.getPeer(), extra });
            }
          },
          (error: unknown) => {
            const failure = toServiceError(error, logger, method);
            // Failed sign-ins are recorded for every method; other failures for the ones that change something.
            if (mutates || !caller) {
              const sessionId = mutates ? mutates(call.request) : "";
              audit.record({ method, caller: caller ?? UNIDENTIFIED, sessionId, result: status[failure.code!], detail: failure.details, peer: call.getPeer() });
            }
            callback(failure);
          },
        );
    };

  const sessionsWithin = { sizeOf: (s: Parameters<typeof toSessionProto>[0]) => SessionProto.encode(toSessionProto(s)).finish().length, maxBytes: budget };
  const messagesWithin = { sizeOf: (m: Parameters<typeof toMessageProto>[0]) => MessageProto.encode(toMessageProto(m)).finish().length, maxBytes: budget };

  return {
    createSession: unary(
      "CreateSession",
      async (request, caller) => {
        const session = await runtime.createSession(caller, {
          owner: request.owner,
          config: toConfigPatch(request.config),
          workspace: request.workspace,
          ephemeral: request.ephemeral,
          labels: request.labels,
        });
        logger.debug({ sessionId: session.id, owner: session.owner }, "session created");
        return { session: toSessionProto(session) };
      },
      (_request, response) => response?.session?.id ?? "",
    ),

    getSession: unary("GetSession", async (request, caller) => {
      const session = runtime.getSession(caller, request.sessionId);
      const treeUsage = runtime.treeUsage(caller, request.sessionId);
      // The caller's own spending, or (an admin) the session owner's; left out when the ledger cannot be read.
      const ownerUsage = await runtime.ownerUsage(caller, session.owner).catch((error: unknown) => {
        logger.warn({ err: error, owner: session.owner }, "reading the owner's spending failed; GetSession answers without it");
        return undefined;
      });
      return { session: toSessionProto(session, treeUsage, ownerUsage) };
    }),

    getOwnerUsage: unary("GetOwnerUsage", async (request, caller) => ({ ownerUsage: toOwnerUsageProto(await runtime.ownerUsage(caller, request.owner)) })),

    listSessions: unary("ListSessions", async (request, caller) => {
      const page = await runtime.listSessionsEverywhere(caller, {
        owner: request.owner,
        pageSize: request.pageSize,
        pageToken: request.pageToken,
        budget: sessionsWithin,
      });
      return { sessions: page.sessions.map((s) => toSessionProto(s)), nextPageToken: page.nextPageToken };
    }),

    destroySession: unary(
      "DestroySession",
      async (request, caller) => {
        const result = await runtime.destroySession(caller, request.sessionId, toChildPolicy(request.childPolicy));
        return { destroyedSessionIds: result.destroyed, orphanedSessionIds: result.orphaned };
      },
      (request) => request.sessionId,
    ),

    configureSession: unary(
      "ConfigureSession",
      (request, caller) => ({ session: toSessionProto(runtime.configureSession(caller, request.sessionId, toConfigPatch(request.config))) }),
      (request) => request.sessionId,
    ),

    createChildSession: unary(
      "CreateChildSession",
      async (request, caller) => {
        const session = await runtime.createChildSession(caller, request.parentId, {
          config: toConfigPatch(request.config),
          workspace: request.workspace,
          labels: request.labels,
        });
        return { session: toSessionProto(session) };
      },
      (request, response) => response?.session?.id ?? request.parentId,
    ),

    listChildSessions: unary("ListChildSessions", (request, caller) => {
      const page = runtime.listChildSessions(caller, request.sessionId, {
        pageSize: request.pageSize,
        pageToken: request.pageToken,
        budget: sessionsWithin,
      });
      return { sessions: page.sessions.map((s) => toSessionProto(s)), nextPageToken: page.nextPageToken };
    }),

    generate: (call: ServerUnaryCall<GenerateRequest, GenerateResponse>, callback: sendUnaryData<GenerateResponse>) => {
      const { sessionId, prompt, apiKey } = call.request;
      let cancelTurn = () => {};
      call.on("cancelled", () => cancelTurn());
      void startTurn(call, "Generate", sessionId, (caller) => {
        const turn = runtime.startTurn(caller, sessionId, prompt, turnOptions(apiKey, call.getDeadline()));
        cancelTurn = () => turn.cancel("client_disconnected");
        turn.events.subscribe((event) => {
          const reply = unaryOutcome(event);
          if (!reply) return;
          callback(reply.error, reply.response);
          audit.record({ method: "Generate", caller, sessionId, result: reply.result, extra: { turnId: turn.turnId }, peer: call.getPeer() });
        });
        // A client may have gone before the turn started.
        if (call.cancelled) cancelTurn();
      }).catch((failure: ReturnType<typeof toServiceError>) => callback(failure));
    },

    streamGenerate: (call: ServerWritableStream<StreamGenerateRequest, StreamGenerateResponse>) => {
      const { sessionId, prompt, apiKey, detachOnDisconnect } = call.request;
      let onCancelled = (_reason: CancelReason = "client_disconnected") => {};
      call.on("cancelled", () => onCancelled());
      void startTurn(call, "StreamGenerate", sessionId, (caller) => {
        // A detached turn outlives the call, so the call's deadline is not the turn's.
        const options = detachOnDisconnect ? { apiKey } : turnOptions(apiKey, call.getDeadline());
        const turn = runtime.startTurn(caller, sessionId, prompt, options);
        // A reader too far behind is cut off like one that left; it may follow the turn again with Subscribe.
        const writer = new EventWriter(
          call,
          (last) => {
            onCancelled("client_too_slow");
            call.emit("error", fellBehind(last));
          },
          deps.writerLimits,
        );
        let audited = false;
        const record = (result: string) => {
          if (audited) return;
          audited = true;
          audit.record({ method: "StreamGenerate", caller, sessionId, result, extra: { turnId: turn.turnId }, peer: call.getPeer() });
        };
        const subscription = turn.events.subscribe({
          next: (event) => {
            // The outcome is audited before the event is written: a reader cut off by that very write is
            // audited as cut off only if the turn had not ended.
            const reply = unaryOutcome(event);
            if (reply) record(reply.result);
            writer.write(event);
          },
          complete: () => writer.end(),
        });
        // A client that cancels its call (or disconnects) cancels the turn, unless it asked to detach.
        onCancelled = (reason = "client_disconnected") => {
          subscription.unsubscribe();
          writer.close();
          if (detachOnDisconnect) return record("DETACHED (the turn goes on)");
          turn.cancel(reason);
          record(`CANCELLED (${reason})`);
        };
        if (call.cancelled) onCancelled();
      }).catch((failure: ReturnType<typeof toServiceError>) => call.emit("error", failure));
    },

    cancel: unary(
      "Cancel",
      (request, caller) => {
        const turnId = runtime.cancelTurn(caller, request.sessionId, "cancel_rpc");
        return { cancelled: turnId !== null, turnId: turnId ?? "" };
      },
      (request) => request.sessionId,
    ),

    pause: unary("Pause", (request, caller) => ({ session: toSessionProto(runtime.pause(caller, request.sessionId)) }), (request) => request.sessionId),

    resume: unary("Resume", (request, caller) => ({ session: toSessionProto(runtime.resume(caller, request.sessionId)) }), (request) => request.sessionId),

    confirmToolCall: unary(
      "ConfirmToolCall",
      (request, caller) => {
        const decision =
          request.decision === ConfirmDecision.CONFIRM_DECISION_APPROVE ? "approve" : request.decision === ConfirmDecision.CONFIRM_DECISION_REJECT ? "reject" : null;
        if (decision === null) throw invalidArgument("decision must be CONFIRM_DECISION_APPROVE or CONFIRM_DECISION_REJECT");
        const answer = runtime.confirmToolCall(caller, request.sessionId, {
          confirmationId: request.confirmationId,
          decision,
          reason: request.reason,
          editedArgumentsJson: request.editedArgumentsJson,
          remember: request.remember,
        });
        return { resolution: toResolutionProto(request.confirmationId, answer.callId, answer.resolution), rememberedRule: answer.rememberedRule };
      },
      (request) => request.sessionId,
    ),

    listPendingConfirmations: unary("ListPendingConfirmations", (request, caller) => ({
      confirmations: runtime.listPendingConfirmations(caller, request.sessionId, request.includeDescendants).map(toPendingConfirmationProto),
    })),

    // Only the watch ends with the call; the turn goes on.
    watchTurn: (call: ServerWritableStream<WatchTurnRequest, WatchTurnResponse>) =>
      follow(call, "WatchTurn", (who, writer) => {
        const subscription = runtime.watchTurn(who, call.request.sessionId).subscribe({
          next: (event) => writer.write(event),
          complete: () => writer.end(),
        });
        return () => subscription.unsubscribe();
      }),

    startTurn: unary(
      "StartTurn",
      (request, caller) => {
        const started = runtime.startServerTurn(caller, request.sessionId, request.prompt, { apiKey: request.apiKey });
        return { turnId: started.turnId, afterSequence: started.afterSequence };
      },
      (request) => request.sessionId,
    ),

    subscribe: (call: ServerWritableStream<SubscribeRequest, SubscribeResponse>) =>
      follow(call, "Subscribe", (who, writer) => {
        const { sessionId, afterSequence, includeDescendants, heartbeatSeconds, fromOldestKept } = call.request;
        // The replay goes at the reader's pace; only live events can make it fall behind.
        const items = runtime.subscribe(who, sessionId, { afterSequence, fromOldestKept, includeDescendants, ready: () => writer.whenWritable() });
        writer.startAfter(afterSequence);
        // Proxies close streams that stay quiet; a heartbeat says the server is there.
        const everyMs = 1000 * (heartbeatSeconds > 0 ? Math.min(heartbeatSeconds, 3600) : 15);
        const heartbeat = setInterval(() => writer.writeMessage({ heartbeat: { time: new Date() } }), everyMs);
        const subscription = items.subscribe({
          next: (item) => (item.kind === "event" ? writer.write(item.event) : writer.writeMessage({ caughtUp: { sequence: item.sequence } })),
          error: (error: unknown) => {
            clearInterval(heartbeat);
            call.emit("error", toServiceError(error, logger, "Subscribe"));
          },
          complete: () => {
            clearInterval(heartbeat);
            writer.end();
          },
        });
        return () => {
          clearInterval(heartbeat);
          subscription.unsubscribe();
        };
      }),

    listTools: unary("ListTools", (request, caller) => ({
      tools: runtime.listTools(caller, request.sessionId).map((tool) => ({
        name: tool.name,
        description: tool.description,
        inputSchemaJson: JSON.stringify(tool.inputSchema),
        readOnly: tool.readOnly,
        origin: tool.source.kind,
        mcpServer: tool.source.kind === "mcp" ? tool.source.server : "",
        mcpTool: tool.source.kind === "mcp" ? tool.source.tool : "",
      })),
    })),

    reloadSkills: unary(
      "ReloadSkills",
      async (_request, caller) => {
        const { skills, problems } = await runtime.reloadSkills(caller);
        return { skills: skills.map(toSkillInfo), problems: problems.map(toProblemProto) };
      },
      () => "",
    ),

    loadSkill: unary(
      "LoadSkill",
      async (request, caller) => ({ skill: toSkillInfo(await runtime.loadSkill(caller, request.sessionId, toDefinitionSource(request.source, "skill"))) }),
      (request) => request.sessionId,
    ),

    unloadSkill: unary(
      "UnloadSkill",
      (request, caller) => {
        runtime.unloadSkill(caller, request.sessionId, request.name);
        return {};
      },
      (request) => request.sessionId,
    ),

    listSkills: unary("ListSkills", (request, caller) => {
      const { skills, problems } = runtime.listSkills(caller, request.sessionId);
      return { skills: skills.map(toSkillInfo), problems: problems.map(toProblemProto) };
    }),

    getSkill: unary("GetSkill", (request, caller) => {
      const skill = runtime.getSkill(caller, request.sessionId, request.name);
      return { skill: toSkillInfo(skill), body: skill.item.body };
    }),

    addMcpServer: unary(
      "AddMcpServer",
      async (request, caller) => ({
        server: toMcpServerInfo(await runtime.addMcpServer(caller, request.sessionId, request.name, toMcpTransportSpec(request.server))),
      }),
      (request) => request.sessionId,
    ),

    removeMcpServer: unary(
      "RemoveMcpServer",
      async (request, caller) => {
        await runtime.removeMcpServer(caller, request.sessionId, request.name);
        return {};
      },
      (request) => request.sessionId,
    ),

    listMcpServers: unary("ListMcpServers", (request, caller) => ({
      servers: runtime.listMcpServers(caller, request.sessionId).map(toMcpServerInfo),
    })),

    reloadAgents: unary(
      "ReloadAgents",
      async (_request, caller) => {
        const { agents, problems } = await runtime.reloadAgents(caller);
        return { agents: agents.map(toAgentInfo), problems: problems.map(toProblemProto) };
      },
      () => "",
    ),

    loadAgent: unary(
      "LoadAgent",
      async (request, caller) => ({ agent: toAgentInfo(await runtime.loadAgent(caller, request.sessionId, toDefinitionSource(request.source, "subagent definition"))) }),
      (request) => request.sessionId,
    ),

    unloadAgent: unary(
      "UnloadAgent",
      (request, caller) => {
        runtime.unloadAgent(caller, request.sessionId, request.name);
        return {};
      },
      (request) => request.sessionId,
    ),

    listAgents: unary("ListAgents", (request, caller) => {
      const { agents, problems } = runtime.listAgents(caller, request.sessionId);
      return { agents: agents.map(toAgentInfo), problems: problems.map(toProblemProto) };
    }),

    getMessages: unary("GetMessages", (request, caller) => {
      const page = runtime.messages(caller, request.sessionId, {
        pageSize: request.pageSize,
        pageToken: request.pageToken,
        budget: messagesWithin,
      });
      return { messages: page.messages.map((message, i) => toMessageProto(message, page.marks[i])), nextPageToken: page.nextPageToken };
    }),

    getContextUsage: unary("GetContextUsage", async (request, caller) => ({
      usage: toContextUsageProto(await runtime.getContextUsage(caller, request.sessionId)),
    })),

    compactSession: unary(
      "CompactSession",
      async (request, caller) => {
        if (request.undo) return { compaction: undefined, usage: toContextUsageProto(await runtime.undoCompaction(caller, request.sessionId)), undone: true };
        const { report, usage } = await runtime.compactSession(caller, request.sessionId, { instructions: request.instructions, apiKey: request.apiKey });
        return { compaction: toCompactionProto(report), usage: toContextUsageProto(usage), undone: false };
      },
      (request) => request.sessionId,
    ),

    clearContext: unary(
      "ClearContext",
      async (request, caller) => {
        const { cleared, usage } = await runtime.clearContext(caller, request.sessionId);
        return { messagesCleared: cleared, usage: toContextUsageProto(usage) };
      },
      (request) => request.sessionId,
    ),

    rewindSession: unary(
      "RewindSession",
      async (request, caller) => {
        const { rewound, usage, note } = await runtime.rewindSession(caller, request.sessionId, request.turnId);
        return { messagesRewound: rewound, usage: toContextUsageProto(usage), note };
      },
      (request) => request.sessionId,
    ),

    forkSession: unary(
      "ForkSession",
      async (request, caller) => {
        const { session, messagesCopied, note } = await runtime.forkSession(caller, request.sessionId, request.turnId);
        return { session: toSessionProto(session), messagesCopied, note };
      },
      (request, response) => response?.session?.id ?? request.sessionId,
    ),
  };

  /**
   * A stream that follows a session (WatchTurn, Subscribe): authenticated first, then `start` wires
   * its events to a writer and returns how to stop. The client leaving, or falling too far behind,
   * stops it; failed sign-ins are audited like every other method's.
   */
  function follow(
    call: ServerWritableStream<{ sessionId: string }, unknown>,
    method: string,
    start: (caller: Caller, writer: EventWriter) => () => void,
  ): void {
    let stop = () => {};
    call.on("cancelled", () => stop());
    let caller: Caller | undefined;
    deps
      .authenticate(call)
      .then((who) => {
        caller = who;
        if (call.cancelled) return;
        const release = streams.acquire(who.owner, call.getPeer());
        const writer = new EventWriter(
          call as ServerWritableStream<unknown, { event?: AgentEvent }>,
          (last) => {
            stop();
            call.emit("error", fellBehind(last));
          },
          deps.writerLimits,
          call.request.sessionId,
        );
        stop = () => {
          release();
          writer.close();
        };
        try {
          const unsubscribe = start(who, writer);
          stop = () => {
            release();
            unsubscribe();
            writer.close();
          };
        } catch (error) {
          stop();
          throw error;
        }
        // Whichever way the stream ends (an error, the end of the session), its place is given back.
        call.once("finish", release);
        call.once("close", release);
      })
      .catch((error: unknown) => {
        const failure = toServiceError(error, logger, method);
        if (!caller) {
          audit.record({ method, caller: UNIDENTIFIED, sessionId: "", result: status[failure.code!], detail: failure.details, peer: call.getPeer() });
        }
        call.emit("error", failure);
      });
  }

  /**
   * Authenticates a turn call, then starts it synchronously inside `start` (so its events are
   * subscribed in time). Rejects with the status to send when either step fails, after auditing it.
   */
  async function startTurn(
    call: { metadata: Metadata; getAuthContext(): AuthContext; getPeer(): string; cancelled: boolean },
    method: string,
    sessionId: string,
    start: (caller: Caller) => void,
  ): Promise<void> {
    let caller: Caller | undefined;
    try {
      caller = await deps.authenticate(call);
      // The client may have gone while it was being authenticated: no turn for nobody.
      if (call.cancelled) {
        audit.record({ method, caller, sessionId, result: "CANCELLED (before the turn started)", peer: call.getPeer() });
        return;
      }
      start(caller);
    } catch (error) {
      const failure = toServiceError(error, logger, method);
      audit.record({ method, caller: caller ?? UNIDENTIFIED, sessionId, result: status[failure.code!], detail: failure.details, peer: call.getPeer() });
      throw failure;
    }
  }
}

/** The status for a reader the server stopped waiting for, saying where to pick up. */
function fellBehind(lastSequence: number) {
  return serviceError(
    status.RESOURCE_EXHAUSTED,
    `the client fell too far behind the events; the last one sent was sequence ${lastSequence}: Subscribe again with after_sequence ${lastSequence}`,
  );
}

/** The call's deadline becomes the turn's, so the turn ends as `deadline_exceeded` rather than running on. */
function turnOptions(apiKey: string, deadline: Date | number): StartTurnOptions {
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  return { apiKey, deadlineMs: Number.isFinite(deadlineMs) ? deadlineMs : undefined };
}

/** Maps a turn's terminal event to a unary reply and an audit result; null for events before the end. */
function unaryOutcome(event: SessionEvent) {
  const payload = event.payload;
  switch (payload.type) {
    case "turn_completed":
      return { result: "OK", error: null, response: { result: toTurnResultProto(payload.result), sequence: event.sequence } };
    case "turn_failed": {
      const code = statusOf(payload.error.kind);
      return { result: status[code], error: serviceError(code, payload.error.message), response: undefined };
    }
    case "turn_cancelled":
      return {
        result: `CANCELLED (${payload.reason})`,
        error: serviceError(status.CANCELLED, `turn ${event.turnId} was cancelled (${payload.reason})`),
        response: undefined,
      };
    default:
      return null;
  }
}
