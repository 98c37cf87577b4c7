import { context, propagation, trace } from "@opentelemetry/api";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import { BatchSpanProcessor, SimpleSpanProcessor, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";

export interface TracingSettings {
  /** OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces. */
  otlpEndpoint: string;
  serviceName: string;
}

/**
 * Registers the OpenTelemetry SDK for this process: spans go to the OTLP endpoint (batched), or to
 * `exporter` (tests: an in-memory one, each span as it ends). W3C trace context is the propagator.
 * Returns what flushes and stops it.
 */
/** Loaded only when tracing is on: the SDK adds to every start otherwise. */
export function startTracing(settings: TracingSettings, exporter?: SpanExporter): { shutdown(): Promise<void> } {
  const processor = exporter
    ? new SimpleSpanProcessor(exporter)
    : new BatchSpanProcessor(new OTLPTraceExporter({ url: settings.otlpEndpoint }));
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({ "service.name": settings.serviceName }),
    spanProcessors: [processor],
  });
  provider.register();
  return {
    shutdown: async () => {
      await provider.shutdown();
      // The process's globals go back to no-ops, so that a server started later in it registers its own.
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

