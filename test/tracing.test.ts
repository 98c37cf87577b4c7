import { credentials, Metadata } from "@grpc/grpc-js";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { AgentRuntimeClient, StreamGenerateRequest } from "../src/gen/agentd/v1/runtime.js";
import { removeTempDirs, scripted, startTestServer, waitFor, type TestServer } from "./helpers/harness.js";

// One server at a time: tracing registers the process's global tracer provider until it stops.
let running: TestServer | undefined;
const start = async (options: Parameters<typeof startTestServer>[0]) => (running = await startTestServer(options));
afterEach(async () => {
  await running?.stop();
  running = undefined;
});
afterAll(removeTempDirs);
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

  it("a subagent's turn is a child of the task call that runs it, in the same trace", async () => {
    const exporter = new InMemorySpanExporter();
    const t = await start({ spanExporter: exporter, config: { tracing: { enabled: true, otlpEndpoint: "http://127.0.0.1:1/unused", serviceName: "agentd-test" } } });
    const scriptJson = JSON.stringify({
      steps: [{ toolCalls: [{ id: "t1", name: "task", arguments: { agent: "helper", prompt: "look around" } }] }, { text: "done" }],
      agents: { helper: { steps: [{ toolCalls: [{ id: "h1", name: "list_dir", arguments: {} }] }, { text: "nothing" }] } },
    });
    const { session } = await t.client.createSession({ config: { model: { provider: "scripted", model: "script", scriptJson } } });
    await t.client.loadAgent({ sessionId: session!.id, source: { $case: "content", content: "---\nname: helper\ndescription: Looks around\ntools: list_dir\n---\nLook.\n" } });
    await t.client.generate({ sessionId: session!.id, prompt: "delegate" });

    const spans = await waitFor(() => {
      const all = exporter.getFinishedSpans();
      return all.filter((s) => s.name === "invoke_agent agentd").length === 2 && all.some((s) => s.name === "agentd.v1.AgentRuntime/Generate") ? all : undefined;
    });
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const parentOf = (span: ReadableSpan) => byId.get(span.parentSpanContext?.spanId ?? "");
    const [task] = spans.filter((s) => s.name === "execute_tool task");
    const turns = spans.filter((s) => s.name === "invoke_agent agentd");
    const child = turns.find((s) => s.attributes["agentd.session_id"] !== session!.id)!;
    const parent = turns.find((s) => s.attributes["agentd.session_id"] === session!.id)!;
    expect(parentOf(task!)).toBe(parent);
    expect(parentOf(child)).toBe(task);
    expect(parentOf(spans.find((s) => s.name === "execute_tool list_dir")!)).toBe(child);
    expect(new Set([task, child, parent].map((s) => s!.spanContext().traceId)).size).toBe(1);
  });

  it("records prompts and outputs only when the operator turns that on", async () => {
    const exporter = new InMemorySpanExporter();
    const t = await start({ spanExporter: exporter, config: { tracing: { enabled: true, otlpEndpoint: "http://127.0.0.1:1/unused", serviceName: "agentd-test", recordContent: true } } });
    const { session } = await t.client.createSession({ config: { model: scripted([{ text: "the recorded answer" }]) } });
    await t.client.generate({ sessionId: session!.id, prompt: "the recorded question" });
    const spans = await waitFor(() => {
      const all = exporter.getFinishedSpans();
      return all.some((s) => s.name === "invoke_agent agentd") ? all : undefined;
    });
    const turn = spans.find((s) => s.name === "invoke_agent agentd")!;
    expect(turn.events.find((e) => e.name === "gen_ai.user.message")?.attributes).toEqual({ "gen_ai.prompt": "the recorded question" });
    const chat = spans.find((s) => s.name === "chat script")!;
    expect(chat.events.find((e) => e.name === "gen_ai.choice")?.attributes?.["gen_ai.completion"]).toBe("the recorded answer");
  });
});
