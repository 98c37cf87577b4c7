import { credentials, Metadata } from "@grpc/grpc-js";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { describe, expect, it } from "vitest";
import { AgentRuntimeClient, StreamGenerateRequest } from "../src/gen/agentd/v1/runtime.js";
import { scripted, serversStoppedAfterAll, waitFor } from "./helpers/harness.js";

const start = serversStoppedAfterAll();
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN = "00f067aa0ba902b7";

describe("OpenTelemetry traces", () => {
  it("a turn with a tool call is one tree of spans under the caller's trace, with GenAI attributes", async () => {
    const exporter = new InMemorySpanExporter();
    const t = await start({ spanExporter: exporter, config: { tracing: { enabled: true, otlpEndpoint: "http://127.0.0.1:1/unused", serviceName: "agentd-test" } } });
    const steps = [
      { toolCalls: [{ id: "c1", name: "list_dir", arguments: {} }], usage: { inputTokens: 40, outputTokens: 6 } },
      { text: "nothing there", usage: { inputTokens: 52, outputTokens: 3 } },
    ];
    const { session } = await t.client.createSession({ config: { model: scripted(steps) } });
    const stub = new AgentRuntimeClient(t.server.address, credentials.createInsecure());
    const metadata = new Metadata();
    metadata.set("traceparent", `00-${TRACE_ID}-${CALLER_SPAN}-01`);
    await new Promise<void>((resolve, reject) => {
      const call = stub.streamGenerate(StreamGenerateRequest.fromPartial({ sessionId: session!.id, prompt: "look" }), metadata);
      call.on("data", () => {});
      call.on("end", resolve);
      call.on("error", reject);
    });
    stub.close();

    const spans = await waitFor(() => {
      const all = exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === TRACE_ID);
      return all.some((s) => s.name === "invoke_agent agentd") ? all : undefined;
    });
    const named = (name: string) => spans.filter((s) => s.name === name);
    const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
    const [rpc] = named("agentd.v1.AgentRuntime/StreamGenerate");
    expect(rpc, spans.map((s) => s.name).join(", ")).toBeDefined();
    expect(parentOf(rpc!)).toBe(CALLER_SPAN);
    expect(rpc!.attributes).toMatchObject({ "rpc.system": "grpc", "rpc.method": "StreamGenerate", "rpc.grpc.status_code": 0 });
    const [turn] = named("invoke_agent agentd");
    expect(parentOf(turn!)).toBe(rpc!.spanContext().spanId);
    expect(turn!.attributes).toMatchObject({ "agentd.session_id": session!.id, "gen_ai.usage.input_tokens": 92, "gen_ai.usage.output_tokens": 9 });
    const chats = named("chat script");
    expect(chats).toHaveLength(2);
    for (const chat of chats) {
      expect(parentOf(chat)).toBe(turn!.spanContext().spanId);
      expect(chat.attributes).toMatchObject({ "gen_ai.operation.name": "chat", "gen_ai.system": "scripted", "gen_ai.request.model": "script" });
    }
    expect(chats.map((c) => c.attributes["gen_ai.usage.input_tokens"]).sort()).toEqual([40, 52]);
    const [tool] = named("execute_tool list_dir");
    expect(parentOf(tool!)).toBe(turn!.spanContext().spanId);
    expect(tool!.attributes).toMatchObject({ "gen_ai.tool.name": "list_dir", "gen_ai.tool.call.id": "c1" });
    // Nothing of the prompt or the answer is in any span.
    expect(JSON.stringify(spans.map((s) => s.attributes))).not.toMatch(/look|nothing there/);
  });
});
