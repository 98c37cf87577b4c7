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
import { context as otelContext, propagation } from "@opentelemetry/api";
import { AgentdError } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Caller } from "../runtime/caller.js";
import type { Runtime } from "../runtime/runtime.js";
import type { AuthenticatedCall } from "./auth/authenticator.js";
import { serviceError, statusOf } from "./status.js";

/** Set on a call one node forwards to another: the receiving node never forwards it again. */
const FORWARDED_BY = "x-agentd-forwarded-by";
/** Set on the status of a forwarded call whose session the receiving node does not run (any more). */
const NOT_HERE = "x-agentd-not-here";
/** Placements remembered at most this long (a lease is renewed at a third of its time). */
const MAX_REMEMBERED = 10_000;

export interface RouterOptions {
  runtime: Runtime;
  nodeId: string;
  /** The cluster's lease time: a placement is trusted for a third of it without asking the database. */
  leaseMs: number;
  /** The largest message a node sends and accepts: forwarded calls carry the same. */
  maxMessageBytes: number;
  /** The nodes' shortest accepted ping interval: the forwarding channel's keepalive respects it. */
  minPingIntervalMs: number;
  logger: Logger;
  /** Who may call at all: checked before a call can make this node take a lease or forward it. */
  authenticate(call: AuthenticatedCall): Promise<Caller>;
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
  /** Where sessions run elsewhere, as last found, so that most forwarded calls cost no query. */
  private readonly placements = new Map<string, { address: string; nodeId: string; until: number }>();

  constructor(private readonly options: RouterOptions) {}

  /**
   * The service definition for a node that forwards: a reply it passes on is the other node's
   * bytes, sent as they came (the replies this node makes itself are objects, encoded as usual).
   */
  static passingBytesThrough<D extends ServiceDefinition>(definition: D): D {
    const wrapped: Record<string, unknown> = {};
    for (const [name, method] of Object.entries(definition)) {
      wrapped[name] = { ...method, responseSerialize: (value: unknown) => (Buffer.isBuffer(value) ? value : method.responseSerialize(value)) };
    }
    return wrapped as D;
  }

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
    if (this.options.runtime.runsHere(sessionId)) return local(call, callback);
    const forwarded = call.metadata.get(FORWARDED_BY).length > 0;
    const remembered = forwarded ? undefined : this.placements.get(sessionId);
    if (remembered && remembered.until > Date.now()) return this.forward(method, call, local, remembered, callback);
    // A caller without valid credentials never makes this node take a lease: the handler refuses it.
    const caller = await this.options.authenticate(call).catch(() => null);
    if (!caller) return local(call, callback);
    let target: Awaited<ReturnType<Runtime["placeSession"]>>;
    try {
      target = await this.options.runtime.placeSession(caller, sessionId);
    } catch (error) {
      if (error instanceof AgentdError) return fail(call, callback, serviceError(statusOf(error.kind), error.message));
      this.options.logger.warn({ err: error, sessionId }, "cannot tell which node runs the session");
      return fail(call, callback, serviceError(status.UNAVAILABLE, "the cluster's database cannot say which node runs this session right now; try again"));
    }
    if (target.kind === "here") return local(call, callback);
    if (forwarded) {
      // The sender thought this node runs it; it finds out where it runs now and tries again.
      const moved = serviceError(status.UNAVAILABLE, "the session moved to another node while this call was on its way; try again");
      moved.metadata!.set(NOT_HERE, "1");
      return fail(call, callback, moved);
    }
    this.remember(sessionId, target);
    this.forward(method, call, local, target, callback);
  }

  private remember(sessionId: string, target: { address: string; nodeId: string }): void {
    if (this.placements.size >= MAX_REMEMBERED) this.placements.clear();
    this.placements.set(sessionId, { address: target.address, nodeId: target.nodeId, until: Date.now() + this.options.leaseMs / 3 });
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
    // The holder's spans continue this call's trace (a no-op without tracing).
    propagation.inject(otelContext.active(), metadata, { set: (carrier, key, value) => carrier.set(key, value) });
    const client = this.clientFor(target.address);
    const deadline = call.getDeadline();
    const callOptions = deadline === Infinity ? {} : { deadline };
    const sessionId = sessionOf(call.request);
    // Safe to try once more only when the other node did not run the call: it could not be reached
    // (presumed dead: its lease is waited out), or it does not run the session any more.
    const retry = async (error: ServiceError): Promise<boolean> => {
      const unreachable = neverArrived(error);
      const notHere = (error.metadata?.get(NOT_HERE).length ?? 0) > 0;
      if (retried || !(unreachable || notHere)) return false;
      this.placements.delete(sessionId);
      try {
        const caller = await this.options.authenticate(call);
        const again = await this.options.runtime.placeSession(caller, sessionId, unreachable ? target.nodeId : null);
        if (again.kind === "here") local(call, callback);
        else {
          this.remember(sessionId, again);
          this.forward(method, call, local, again, callback, true);
        }
        return true;
      } catch {
        return false;
      }
    };
    if (callback) {
      const upstream = client.makeUnaryRequest(method.path, method.requestSerialize, asBytes, call.request, metadata, callOptions, (error, response) => {
        if (!error) return callback(null, response);
        void retry(error).then((handled) => {
          if (!handled) callback(passedOn(error));
        });
      });
      call.on("cancelled", () => upstream.cancel());
      return;
    }
    const stream = call as ServerWritableStream<unknown, unknown>;
    const upstream: ClientReadableStream<unknown> = client.makeServerStreamRequest(method.path, method.requestSerialize, asBytes, call.request, metadata, callOptions);
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
      if (received) return void stream.emit("error", passedOn(error));
      void retry(error).then((handled) => {
        if (!handled) stream.emit("error", passedOn(error));
      });
    });
    upstream.on("end", () => {
      if (!failed) stream.end();
    });
  }

  private clientFor(address: string): Client {
    let client = this.clients.get(address);
    if (!client) {
      client = new Client(address, credentials.createInsecure(), {
        "grpc.max_receive_message_length": this.options.maxMessageBytes,
        "grpc.max_send_message_length": this.options.maxMessageBytes,
        // This router decides what is safe to try again (see forward); grpc-js's own retries would buffer every call for nothing.
        "grpc.enable_retries": 0,
        // A holder whose host vanished without a word ends the forwarded streams (UNAVAILABLE) instead of leaving them hanging.
        "grpc.keepalive_time_ms": Math.max(10_000, this.options.minPingIntervalMs),
        "grpc.keepalive_timeout_ms": 10_000,
      });
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

/** Replies of the other node, kept as bytes: passed on, not decoded and encoded again. */
const asBytes = (bytes: Buffer): unknown => bytes;

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
