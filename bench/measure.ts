/**
 * What the workloads share: statistics, timed samples, a turn read off a stream, and capturing the
 * exact bytes agentd sends, for the raw baseline to send back.
 */
import { Client, credentials, status, type ServiceError } from "@grpc/grpc-js";
import type { AgentdClient } from "../src/client/client.js";
import { StreamGenerateResponse, type AgentEvent } from "../src/gen/agentd/v1/runtime.js";
import type { RawProfile } from "./raw-server.js";

/** A scripted model playing `steps` over and over. */
export const script = (steps: object[]) => ({ provider: "scripted", model: "script", scriptJson: JSON.stringify({ steps, repeat: true }) });

export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/**
 * Runs `sample` one at a time, up to `count` times or until `budgetMs` has passed (at least 5
 * samples), and returns each one's duration in ms. A sample may return its own figure instead.
 */
export async function timedSamples(count: number, budgetMs: number, sample: (i: number) => Promise<number | void>): Promise<number[]> {
  const figures: number[] = [];
  const started = performance.now();
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    const own = await sample(i);
    figures.push(typeof own === "number" ? own : performance.now() - t0);
    if (i >= 4 && performance.now() - started > budgetMs) break;
  }
  return figures;
}

/**
 * One StreamGenerate call. `onEvent` sees each event as it arrives (with its arrival time); when it
 * returns true the call is cancelled, and the promise resolves once the call has ended.
 */
export function streamTurn(client: AgentdClient, sessionId: string, prompt: string, onEvent: (event: AgentEvent, at: number) => boolean | void): Promise<void> {
  return new Promise((resolve, reject) => {
    const call = client.streamGenerate({ sessionId, prompt });
    let cancelled = false;
    call.on("data", (message: StreamGenerateResponse) => {
      if (cancelled || !message.event) return;
      if (onEvent(message.event, performance.now()) === true) {
        cancelled = true;
        call.cancel();
      }
    });
    call.on("error", (error: ServiceError) => (cancelled && error.code === status.CANCELLED ? resolve() : reject(error)));
    call.on("end", () => resolve());
  });
}

const SERVICE = "/agentd.v1.AgentRuntime/";
const bytes = (value: Buffer) => value;

/** A client that sends request bytes as they are and returns reply bytes undecoded. */
export class ByteClient {
  private readonly client: Client;

  constructor(address: string) {
    this.client = new Client(address, credentials.createInsecure());
  }

  unary(method: string, request: Uint8Array): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(`${SERVICE}${method}`, bytes, bytes, Buffer.from(request), (error, reply) => (error ? reject(error) : resolve(reply!)));
    });
  }

  stream(method: string, request: Uint8Array): Promise<Buffer[]> {
    return new Promise((resolve, reject) => {
      const messages: Buffer[] = [];
      const call = this.client.makeServerStreamRequest(`${SERVICE}${method}`, bytes, bytes, Buffer.from(request));
      call.on("data", (message: Buffer) => messages.push(message));
      call.on("error", reject);
      call.on("end", () => resolve(messages));
    });
  }

  close(): void {
    this.client.close();
  }
}

type StreamPlan = NonNullable<RawProfile["stream"]>;
const base64 = (message: Uint8Array) => Buffer.from(message).toString("base64");

/**
 * A raw stream built from a short agentd turn: its messages before the first text delta, one text
 * delta (agentd's own message, with `deltaText` and a sequence number of the size the long turn's
 * have) sent `deltas` times, and its messages after the last text delta.
 */
export function deltaPlan(captured: Buffer[], deltaText: string, deltas: number, durable: boolean): StreamPlan {
  const decoded = captured.map((message) => StreamGenerateResponse.decode(message));
  const isDelta = decoded.map((message) => message.event?.payload?.$case === "textDelta");
  const first = isDelta.indexOf(true);
  const last = isDelta.lastIndexOf(true);
  if (first < 0) throw new Error("the captured turn has no text delta");
  if (last === captured.length - 1) throw new Error("the captured turn does not end with a non-delta event");
  const template = decoded[first]!;
  template.event!.payload = { $case: "textDelta", textDelta: { text: deltaText } };
  template.event!.sequence = first + Math.ceil(deltas / 2);
  return {
    head: captured.slice(0, first).map(base64),
    delta: base64(StreamGenerateResponse.encode(template).finish()),
    deltas,
    tail: captured.slice(last + 1).map(base64),
    durable,
  };
}

/** A raw stream that sends the captured messages as they are (the last one after fsync, when durable). */
export function verbatimPlan(captured: Buffer[], durable: boolean): StreamPlan {
  if (captured.length === 0) throw new Error("the captured turn is empty");
  return { head: captured.slice(0, -1).map(base64), delta: "", deltas: 0, tail: [base64(captured.at(-1)!)], durable };
}

export { base64 };
