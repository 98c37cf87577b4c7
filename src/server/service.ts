import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import { filter, takeWhile, type Subscription } from "rxjs";
import { isTerminalPayload, type AgentEvent } from "../agent/events.js";
import type {
  AgentRuntimeServer,
  GenerateRequest,
  GenerateResponse,
  StreamGenerateRequest,
  StreamGenerateResponse,
} from "../gen/agentd/v1/runtime.js";
import { invalidArgument } from "../errors.js";
import type { Logger } from "../logging.js";
import type { SessionManager } from "../session/manager.js";
import type { Session } from "../session/session.js";
import { checkLabels, checkWorkspace, toChildPolicy, toConfigPatch, toMessageProto, toSessionProto } from "./mapping.js";
import { codeFromName, serviceError, toServiceError } from "./status.js";

/** The AgentRuntime handlers: they validate, call the SessionManager and map results to messages. */
export function createAgentRuntimeService(manager: SessionManager, logger: Logger): AgentRuntimeServer {
  const unary = <Req, Res>(method: string, handle: (request: Req) => Promise<Res> | Res) =>
    (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      Promise.resolve()
        .then(() => handle(call.request))
        .then(
          (response) => callback(null, response),
          (error: unknown) => callback(toServiceError(error, logger, method)),
        );
    };

  return {
    createSession: unary("CreateSession", async (request) => {
      const session = await manager.create({
        owner: request.owner,
        config: toConfigPatch(request.config),
        workspace: checkWorkspace(request.workspace),
        ephemeral: request.ephemeral,
        labels: checkLabels(request.labels),
      });
      logger.info({ sessionId: session.id, owner: session.owner }, "session created");
      return { session: toSessionProto(session) };
    }),

    getSession: unary("GetSession", (request) => ({ session: toSessionProto(manager.get(request.sessionId)) })),

    listSessions: unary("ListSessions", (request) => {
      const page = manager.list({ owner: request.owner, pageSize: request.pageSize, pageToken: request.pageToken });
      return { sessions: page.sessions.map(toSessionProto), nextPageToken: page.nextPageToken };
    }),

    destroySession: unary("DestroySession", async (request) => {
      const result = await manager.destroy(request.sessionId, toChildPolicy(request.childPolicy));
      return { destroyedSessionIds: result.destroyed, orphanedSessionIds: result.orphaned };
    }),

    configureSession: unary("ConfigureSession", (request) => ({
      session: toSessionProto(manager.configure(request.sessionId, toConfigPatch(request.config))),
    })),

    createChildSession: unary("CreateChildSession", async (request) => {
      if (request.parentId === "") throw invalidArgument("parent_id is required");
      const session = await manager.createChild(request.parentId, {
        config: toConfigPatch(request.config),
        workspace: checkWorkspace(request.workspace),
        labels: checkLabels(request.labels),
      });
      return { session: toSessionProto(session) };
    }),

    listChildSessions: unary("ListChildSessions", (request) => ({
      sessions: manager.children(request.sessionId).map(toSessionProto),
    })),

    generate: (call: ServerUnaryCall<GenerateRequest, GenerateResponse>, callback: sendUnaryData<GenerateResponse>) => {
      let subscription: Subscription | undefined;
      try {
        const { sessionId, prompt, apiKey } = call.request;
        const { session, turn } = manager.prepareTurn(sessionId, prompt, apiKey);
        subscription = turnEvents(session, turn.turnId).subscribe((event) => {
          const reply = unaryOutcome(event);
          if (reply) callback(reply.error, reply.response);
        });
        call.on("cancelled", () => session.cancelTurn("client_disconnected", turn.turnId));
        turn.start();
      } catch (error) {
        subscription?.unsubscribe();
        callback(toServiceError(error, logger, "Generate"));
      }
    },

    streamGenerate: (call: ServerWritableStream<StreamGenerateRequest, StreamGenerateResponse>) => {
      try {
        const { sessionId, prompt, apiKey } = call.request;
        const { session, turn } = manager.prepareTurn(sessionId, prompt, apiKey);
        const subscription = turnEvents(session, turn.turnId).subscribe({
          next: (event) => call.write({ event }),
          complete: () => call.end(),
        });
        // A client that cancels its call (or disconnects) cancels the turn.
        call.on("cancelled", () => {
          subscription.unsubscribe();
          session.cancelTurn("client_disconnected", turn.turnId);
        });
        turn.start();
      } catch (error) {
        call.emit("error", toServiceError(error, logger, "StreamGenerate"));
      }
    },

    cancel: unary("Cancel", (request) => {
      const turnId = manager.cancel(request.sessionId, "cancel_rpc");
      return { cancelled: turnId !== null, turnId: turnId ?? "" };
    }),

    pause: unary("Pause", (request) => ({ session: toSessionProto(manager.pause(request.sessionId)) })),

    resume: unary("Resume", (request) => ({ session: toSessionProto(manager.resume(request.sessionId)) })),

    getMessages: unary("GetMessages", (request) => {
      const page = manager.messages(request.sessionId, { pageSize: request.pageSize, pageToken: request.pageToken });
      return { messages: page.messages.map(toMessageProto), nextPageToken: page.nextPageToken };
    }),
  };
}

/**
 * The events a Generate call sees: its own turn's events and session-level ones (persistence
 * failures, state changes) until the turn's terminal event, inclusive.
 */
function turnEvents(session: Session, turnId: string) {
  return session.events$.pipe(
    filter((event) => event.turnId === turnId || event.turnId === ""),
    takeWhile((event) => !(event.turnId === turnId && isTerminalPayload(event.payload)), true),
  );
}

/** Maps a unary Generate's terminal event to its reply; null for events before the end. */
function unaryOutcome(event: AgentEvent) {
  const payload = event.payload;
  switch (payload?.$case) {
    case "turnCompleted":
      return { error: null, response: { result: payload.turnCompleted.result, sequence: event.sequence } };
    case "error":
      return { error: serviceError(codeFromName(payload.error.code), payload.error.message), response: undefined };
    case "cancelled":
      return {
        error: serviceError(status.CANCELLED, `turn ${event.turnId} was cancelled (${payload.cancelled.reason})`),
        response: undefined,
      };
    default:
      return null;
  }
}
