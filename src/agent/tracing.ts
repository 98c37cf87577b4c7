import { context as otelContext, SpanKind, SpanStatusCode, trace, type Context, type Span } from "@opentelemetry/api";

/**
 * The spans of a turn, through the OpenTelemetry API only: without an SDK registered (tracing off,
 * the default) every call here is a no-op. Model calls follow the GenAI semantic conventions
 * (gen_ai.*); prompts and outputs are not recorded.
 */
const tracer = () => trace.getTracer("agentd");

export type TraceContext = Context;

/** The turn's span, a child of whatever is active (the RPC that started it, or a subagent's tool call). */
export function startTurnSpan(attributes: { sessionId: string; turnId: string; model: string }): { span: Span; context: TraceContext } {
  const parent = otelContext.active();
  const span = tracer().startSpan(
    "invoke_agent agentd",
    { kind: SpanKind.INTERNAL, attributes: { "gen_ai.operation.name": "invoke_agent", "agentd.session_id": attributes.sessionId, "agentd.turn_id": attributes.turnId, "gen_ai.request.model": attributes.model } },
    parent,
  );
  return { span, context: trace.setSpan(parent, span) };
}

/** A model call's span (a client span of the provider's API). */
export function startModelSpan(parent: TraceContext | undefined, provider: string, model: string): Span {
  return tracer().startSpan(
    `chat ${model}`,
    { kind: SpanKind.CLIENT, attributes: { "gen_ai.operation.name": "chat", "gen_ai.system": provider, "gen_ai.provider.name": provider, "gen_ai.request.model": model } },
    parent,
  );
}

/** A tool call's span; what runs inside `run` (a subagent's turn, an MCP call) becomes its child. */
export async function inToolSpan<T>(parent: TraceContext | undefined, call: { id: string; name: string }, run: () => Promise<T>, failed: (result: T) => boolean): Promise<T> {
  // A turn without a trace (tracing off) pays nothing for spans.
  if (parent === undefined) return run();
  const span = tracer().startSpan(
    `execute_tool ${call.name}`,
    { kind: SpanKind.INTERNAL, attributes: { "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": call.name, "gen_ai.tool.call.id": call.id } },
    parent,
  );
  try {
    const result = await otelContext.with(trace.setSpan(parent ?? otelContext.active(), span), run);
    if (failed(result)) span.setStatus({ code: SpanStatusCode.ERROR, message: "the tool reported an error" });
    return result;
  } catch (error) {
    endWithError(span, error);
    throw error;
  } finally {
    span.end();
  }
}

export function endWithError(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : new Error(String(error)));
  span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : String(error) });
}
