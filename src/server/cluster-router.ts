import {
  Client,
  credentials,
  status,
  type ClientReadableStream,
  type MethodDefinition,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type ServiceError,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { AgentdError } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Runtime } from "../runtime/runtime.js";
import type { AuthenticatedCall } from "./auth/authenticator.js";
import { serviceError, statusOf } from "./status.js";

/** Set on a call one node forwards to another: the receiving node never forwards it again. */
export const FORWARDED_BY = "x-agentd-forwarded-by";

export interface RouterOptions {
  runtime: Runtime;
  nodeId: string;
  logger: Logger;
  /** Who may call at all: checked before a call can make this node take a lease or forward it. */
  authenticate(call: AuthenticatedCall): Promise<unknown>;
}

type AnyCall = (ServerUnaryCall<unknown, unknown> | ServerWritableStream<unknown, unknown>) & { request: unknown };

/**
 * The edge of a cluster node: a call on a session (its request names session_id, or parent_id for
 * CreateChildSession) is served by the node that runs the session's tree. When that is another node,
 * the call is forwarded to it over gRPC, streams included, with the caller's metadata (its
 * credentials) and deadline; when no live node runs it, this node takes the lease and serves it.
 * Calls that name no session (CreateSession, ListSessions, the global registries) are served here.
 */
export class ClusterRouter {
  private readonly clients = new Map<string, Client>();

  constructor(private readonly options: RouterOptions) {}

  /** The implementation with every session call routed. */
  wrap(definition: ServiceDefinition, implementation: UntypedServiceImplementation): UntypedServiceImplementation {
    const routed: UntypedServiceImplementation = {};
    for (const [name, handler] of Object.entries(implementation)) {
      const method = definition[name] ?? Object.values(definition).find((m) => m.originalName === name);
      if (!method) {
        routed[name] = handler;
        continue;
      }
      const local = handler as (call: AnyCall, callback?: sendUnaryData<unknown>) => void;
      routed[name] = method.responseStream
        ? (call: ServerWritableStream<unknown, unknown>) => void this.route(method, call as AnyCall, local)
        : (call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => void this.route(method, call as AnyCall, local, callback);
    }
    return routed;
  }

  close(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  private async route(
    method: MethodDefinition<unknown, unknown>,
    call: AnyCall,
    local: (call: AnyCall, callback?: sendUnaryData<unknown>) => void,
    callback?: sendUnaryData<unknown>,
  ): Promise<void> {
    const sessionId = sessionOf(call.request);
    if (sessionId === "") return local(call, callback);
    // A caller without valid credentials never makes this node take a lease: the handler refuses it.
    if (!(await this.options.authenticate(call).then(() => true, () => false))) return local(call, callback);
    let target: Awaited<ReturnType<Runtime["placeSession"]>>;
    try {
      target = await this.options.runtime.placeSession(sessionId);
    } catch (error) {
      if (error instanceof AgentdError) return fail(call, callback, serviceError(statusOf(error.kind), error.message));
      this.options.logger.warn({ err: error, sessionId }, "cannot tell which node runs the session");
      return fail(call, callback, serviceError(status.UNAVAILABLE, "the cluster's database cannot say which node runs this session right now; try again"));
    }
    if (target.kind === "here") return local(call, callback);
    if (call.metadata.get(FORWARDED_BY).length > 0) {
      return fail(call, callback, serviceError(status.UNAVAILABLE, "the session moved to another node while this call was on its way; try again"));
    }
    this.forward(method, call, local, target, callback);
  }

  /**
   * Sends the call to the holder. A holder that cannot be reached (no connection: the call never
   * got there, so trying again is safe) is presumed dead: its lease is waited out, then the session
   * is served wherever it lands, here or on the node that took it.
   */
  private forward(
    method: MethodDefinition<unknown, unknown>,
    call: AnyCall,
    local: (call: AnyCall, callback?: sendUnaryData<unknown>) => void,
    target: { address: string; nodeId: string },
    callback: sendUnaryData<unknown> | undefined,
    retried = false,
  ): void {
    const metadata = call.metadata.clone();
    metadata.set(FORWARDED_BY, this.options.nodeId);
    const client = this.clientFor(target.address);
    const deadline = call.getDeadline();
    const callOptions = deadline === Infinity ? {} : { deadline };
    const retry = async (): Promise<boolean> => {
      if (retried) return false;
      const sessionId = sessionOf(call.request);
      try {
        const again = await this.options.runtime.placeSession(sessionId, target.nodeId);
        if (again.kind === "here") local(call, callback);
        else this.forward(method, call, local, again, callback, true);
        return true;
      } catch {
        return false;
      }
    };
    if (callback) {
      const upstream = client.makeUnaryRequest(method.path, method.requestSerialize, method.responseDeserialize, call.request, metadata, callOptions, (error, response) => {
        if (!error) return callback(null, response);
        if (neverArrived(error)) {
          void retry().then((handled) => {
            if (!handled) callback(passedOn(error));
          });
          return;
        }
        callback(passedOn(error));
      });
      call.on("cancelled", () => upstream.cancel());
      return;
    }
    const stream = call as ServerWritableStream<unknown, unknown>;
    const upstream: ClientReadableStream<unknown> = client.makeServerStreamRequest(method.path, method.requestSerialize, method.responseDeserialize, call.request, metadata, callOptions);
    let received = false;
    let failed = false;
    stream.on("cancelled", () => upstream.cancel());
    // The reader's pace reaches the holder: a full buffer here pauses the forwarded stream.
    stream.on("drain", () => upstream.resume());
    upstream.on("data", (message: unknown) => {
      received = true;
      if (!stream.write(message)) upstream.pause();
    });
    upstream.on("error", (error: ServiceError) => {
      failed = true;
      if (error.code === status.CANCELLED && stream.cancelled) return;
      if (!received && neverArrived(error)) {
        void retry().then((handled) => {
          if (!handled) stream.emit("error", passedOn(error));
        });
        return;
      }
      stream.emit("error", passedOn(error));
    });
    upstream.on("end", () => {
      if (!failed) stream.end();
    });
  }

  private clientFor(address: string): Client {
    let client = this.clients.get(address);
    if (!client) {
      client = new Client(address, credentials.createInsecure());
      this.clients.set(address, client);
    }
    return client;
  }
}

/** The session a request names: session_id, or a child's parent_id. */
function sessionOf(request: unknown): string {
  const fields = request as { sessionId?: unknown; parentId?: unknown } | null;
  if (typeof fields?.sessionId === "string") return fields.sessionId;
  if (typeof fields?.parentId === "string") return fields.parentId;
  return "";
}

/** A call that failed before it reached the other node: no connection could be made. */
function neverArrived(error: ServiceError): boolean {
  return error.code === status.UNAVAILABLE && /No connection established|ECONNREFUSED/.test(error.details ?? "");
}

/** The holder's status, as the holder said it. */
function passedOn(error: ServiceError): Partial<ServiceError> {
  return serviceError(error.code ?? status.UNKNOWN, error.details || error.message);
}

function fail(call: AnyCall, callback: sendUnaryData<unknown> | undefined, error: Partial<ServiceError>): void {
  if (callback) callback(error);
  else call.emit("error", error);
}
