import { status, type sendUnaryData, type ServerUnaryCall, type ServerWritableStream } from "@grpc/grpc-js";
import type { SessionEvent } from "../events/types.js";
import type {
  AgentRuntimeServer,
  GenerateRequest,
  GenerateResponse,
  StreamGenerateRequest,
  StreamGenerateResponse,
} from "../gen/agentd/v1/runtime.js";
import { invalidArgument } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Runtime } from "../runtime/runtime.js";
import type { StartTurnOptions } from "../runtime/turn-runner.js";
import { EventWriter } from "./event-writer.js";
import { serviceError, statusOf, toServiceError } from "./status.js";
import { checkLabels, checkWorkspace } from "./validation.js";
import { toChildPolicy, toConfigPatch, toMessageProto, toSessionProto, toTurnResultProto } from "./wire.js";

/** The AgentRuntime handlers: each translates its request into a Runtime call and the result back. */
export function createAgentRuntimeService(runtime: Runtime, logger: Logger): AgentRuntimeServer {
  const unary =
    <Req, Res>(method: string, handle: (request: Req) => Promise<Res> | Res) =>
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
      const session = await runtime.createSession({
        owner: request.owner,
        config: toConfigPatch(request.config),
        workspace: checkWorkspace(request.workspace),
        ephemeral: request.ephemeral,
        labels: checkLabels(request.labels),
      });
      logger.info({ sessionId: session.id, owner: session.owner }, "session created");
      return { session: toSessionProto(session) };
    }),

    getSession: unary("GetSession", (request) => ({ session: toSessionProto(runtime.getSession(request.sessionId)) })),

    listSessions: unary("ListSessions", (request) => {
      const page = runtime.listSessions({ owner: request.owner, pageSize: request.pageSize, pageToken: request.pageToken });
      return { sessions: page.sessions.map(toSessionProto), nextPageToken: page.nextPageToken };
    }),

    destroySession: unary("DestroySession", async (request) => {
      const result = await runtime.destroySession(request.sessionId, toChildPolicy(request.childPolicy));
      return { destroyedSessionIds: result.destroyed, orphanedSessionIds: result.orphaned };
    }),

    configureSession: unary("ConfigureSession", (request) => ({
      session: toSessionProto(runtime.configureSession(request.sessionId, toConfigPatch(request.config))),
    })),

    createChildSession: unary("CreateChildSession", async (request) => {
      if (request.parentId === "") throw invalidArgument("parent_id is required");
      const session = await runtime.createChildSession(request.parentId, {
        config: toConfigPatch(request.config),
        workspace: checkWorkspace(request.workspace),
        labels: checkLabels(request.labels),
      });
      return { session: toSessionProto(session) };
    }),

    listChildSessions: unary("ListChildSessions", (request) => ({
      sessions: runtime.listChildSessions(request.sessionId).map(toSessionProto),
    })),

    generate: (call: ServerUnaryCall<GenerateRequest, GenerateResponse>, callback: sendUnaryData<GenerateResponse>) => {
      try {
        const { sessionId, prompt, apiKey } = call.request;
        const turn = runtime.startTurn(sessionId, prompt, turnOptions(apiKey, call.getDeadline()));
        turn.events.subscribe((event) => {
          const reply = unaryOutcome(event);
          if (reply) callback(reply.error, reply.response);
        });
        call.on("cancelled", () => turn.cancel("client_disconnected"));
        // A client may have gone before the listener was attached.
        if (call.cancelled) turn.cancel("client_disconnected");
      } catch (error) {
        callback(toServiceError(error, logger, "Generate"));
      }
    },

    streamGenerate: (call: ServerWritableStream<StreamGenerateRequest, StreamGenerateResponse>) => {
      try {
        const { sessionId, prompt, apiKey } = call.request;
        const turn = runtime.startTurn(sessionId, prompt, turnOptions(apiKey, call.getDeadline()));
        const writer = new EventWriter(call);
        const subscription = turn.events.subscribe({ next: (event) => writer.write(event), complete: () => writer.end() });
        // A client that cancels its call (or disconnects) cancels the turn.
        const onCancelled = () => {
          subscription.unsubscribe();
          writer.close();
          turn.cancel("client_disconnected");
        };
        call.on("cancelled", onCancelled);
        // A client may have gone before the listener was attached.
        if (call.cancelled) onCancelled();
      } catch (error) {
        call.emit("error", toServiceError(error, logger, "StreamGenerate"));
      }
    },

    cancel: unary("Cancel", (request) => {
      const turnId = runtime.cancelTurn(request.sessionId, "cancel_rpc");
      return { cancelled: turnId !== null, turnId: turnId ?? "" };
    }),

    pause: unary("Pause", (request) => ({ session: toSessionProto(runtime.pause(request.sessionId)) })),

    resume: unary("Resume", (request) => ({ session: toSessionProto(runtime.resume(request.sessionId)) })),

    getMessages: unary("GetMessages", (request) => {
      const page = runtime.messages(request.sessionId, { pageSize: request.pageSize, pageToken: request.pageToken });
      return { messages: page.messages.map(toMessageProto), nextPageToken: page.nextPageToken };
    }),
  };
}

/** The call's deadline becomes the turn's, so the turn ends as `deadline_exceeded` rather than running on. */
function turnOptions(apiKey: string, deadline: Date | number): StartTurnOptions {
  const deadlineMs = deadline instanceof Date ? deadline.getTime() : deadline;
  return { apiKey, deadlineMs: Number.isFinite(deadlineMs) ? deadlineMs : undefined };
}

/** Maps a unary Generate's terminal event to its reply; null for events before the end. */
function unaryOutcome(event: SessionEvent) {
  const payload = event.payload;
  switch (payload.type) {
    case "turn_completed":
      return { error: null, response: { result: toTurnResultProto(payload.result), sequence: event.sequence } };
    case "turn_failed":
      return { error: serviceError(statusOf(payload.error.kind), payload.error.message), response: undefined };
    case "turn_cancelled":
      return {
        error: serviceError(status.CANCELLED, `turn ${event.turnId} was cancelled (${payload.reason})`),
        response: undefined,
      };
    default:
      return null;
  }
}
