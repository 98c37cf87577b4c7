import { context, propagation, SpanKind, SpanStatusCode, trace, type TextMapGetter } from "@opentelemetry/api";
import { status, type Metadata } from "@grpc/grpc-js";
import { aroundCalls } from "./call-end.js";

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
  const tracer = trace.getTracer("agentd");
  return aroundCalls(implementation, (method, call) => {
    const parent = propagation.extract(context.active(), call.metadata, fromMetadata);
    const span = tracer.startSpan(`${service}/${method}`, { kind: SpanKind.SERVER, attributes: { "rpc.system": "grpc", "rpc.service": service, "rpc.method": method } }, parent);
    return {
      run: (handler) => context.with(trace.setSpan(parent, span), handler),
      ended: (code, details) => {
        span.setAttribute("rpc.grpc.status_code", code);
        if (code !== status.OK) span.setStatus({ code: SpanStatusCode.ERROR, message: details ?? status[code] });
        span.end();
      },
    };
  });
}
