import { context, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter } from "@opentelemetry/api";
import { status, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";

type Handler = (call: EventEmitter & { metadata: Metadata }, callback?: (error: ServiceError | null, ...rest: unknown[]) => void) => unknown;

/** W3C trace context (traceparent, tracestate) read from a call's metadata. */
const fromMetadata: TextMapGetter<Metadata> = {
  keys: (metadata) => Object.keys(metadata.getMap()),
  get: (metadata, key) => {
    const values = metadata.get(key);
    return values.length === 0 ? undefined : values.map(String);
  },
};

/**
 * A server span per RPC (`agentd.v1.AgentRuntime/Method`), continuing the caller's trace when its
 * metadata carries one; the handler runs inside it, so a turn it starts is its child.
 */
export function tracingCalls<I extends object>(implementation: I, service: string): I {
  const wrapped: Record<string, unknown> = {};
  const tracer = trace.getTracer("agentd");
  for (const [name, handler] of Object.entries(implementation as UntypedServiceImplementation)) {
    const run = handler as unknown as Handler;
    const method = name.charAt(0).toUpperCase() + name.slice(1);
    wrapped[name] = (call: EventEmitter & { metadata: Metadata }, callback?: (error: ServiceError | null, ...rest: unknown[]) => void) => {
      const parent = propagation.extract(context.active(), call.metadata, fromMetadata);
      const span = tracer.startSpan(
        `${service}/${method}`,
        { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } },
        parent,
      );
      let ended = false;
      const end = (code: number, message?: string) => {
        if (ended) return;
        ended = true;
        span.setAttribute("rpc.grpc.status_code", code);
        if (code !== status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: message ?? status[code] });
        span.end();
      };
      return context.with(trace.setSpan(parent, span), () => {
        if (callback) {
          return run(call, (error, ...rest) => {
            end(error ? (error.code ?? status.UNKNOWN) : status.OK, error?.details);
            callback(error, ...rest);
          });
        }
        call.once("finish", () => end(status.OK));
        call.once("cancelled", () => end(status.CANCELLED));
        call.prependListener("error", (error: ServiceError) => end(error.code ?? status.UNKNOWN, error.details));
        return run(call);
      });
    };
  }
  return wrapped as I;
}
