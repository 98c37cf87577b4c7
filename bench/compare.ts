/**
 * The workloads of issue 10, each measured on agentd and on its baseline in the same run, runs
 * interleaved (the baseline first in runs 1, 3, 5, agentd first in the others) so drift hits both alike.
 * A workload's figure per run is a p50 (or a rate); its result is the median over runs, and its
 * ratio is agentd's cost over the baseline's (time / time, or rate / rate inverted).
 */
import { status, type ServiceError } from "@grpc/grpc-js";
import { spawnSync } from "node:child_process";
import { AgentdClient } from "../src/client/client.js";
import { CreateSessionRequest, GetSessionRequest, StreamGenerateRequest, type DeepPartial } from "../src/gen/agentd/v1/runtime.js";
import { whenIdle, type ServerChild } from "./children.js";
import { base64, ByteClient, deltaPlan, median, percentile, script, streamTurn, timedSamples, verbatimPlan } from "./measure.js";
import type { RawProfile } from "./raw-server.js";

export interface Row {
  key: string;
  title: string;
  agentd: string;
  baseline: string;
  /** agentd's cost over the baseline's, when there is a baseline. */
  ratio: number | null;
  target: string;
  ok: boolean;
  /** Per-run figures, for the log. */
  detail: string;
}

export type Unit = "ms" | "/s" | "s" | "B";

export function formatFigure(value: number, unit: Unit): string {
  if (!Number.isFinite(value)) return "n/a";
  if (unit === "/s") return value >= 10_000 ? `${(value / 1000).toFixed(1)}k/s` : `${value.toFixed(0)}/s`;
  if (unit === "ms") return value >= 100 ? `${value.toFixed(0)} ms` : `${value.toFixed(2)} ms`;
  if (unit === "s") return `${value.toFixed(2)} s`;
  return `${value.toFixed(0)} B`;
}

const SHORT = script([{ text: "short answer" }]);
const TOOL = script([{ text: "Looking.", toolCalls: [{ name: "list_dir", arguments: {} }] }, { text: "Done: nothing there.", chunkSize: 4 }]);
const textOf = (chars: number, chunkSize: number) => script([{ text: "x".repeat(chars), chunkSize }]);

/** One side of a comparison: a server and a client for it. */
export interface Side {
  name: "agentd" | "baseline";
  client: AgentdClient;
  /** A session to run turns on: agentd creates one (outside the timing); the raw server needs none. */
  session(model: object, owner?: string): Promise<string>;
  /** After a cancelled call: waits until agentd's turn has ended (outside the timing). */
  settle(sessionId: string): Promise<void>;
}

export interface Bench {
  runs: number;
  agentd: Side;
  raw: Side;
  rawChild: ServerChild;
  agentdChild: ServerChild;
  agentdBytes: ByteClient;
}

export function agentdSide(client: AgentdClient): Side {
  return {
    name: "agentd",
    client,
    async session(model, owner = "bench") {
      return (await client.createSession({ owner, config: { model } })).session!.id;
    },
    async settle(sessionId) {
      for (let i = 0; i < 400; i++) {
        if (!(await client.getSession({ sessionId })).session!.turnActive) return;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  };
}

export function rawSide(client: AgentdClient): Side {
  return { name: "baseline", client, session: async () => "raw", settle: async () => {} };
}

/**
 * Before each measured run: flushes dirty pages to disk (so neither side's fsyncs pay for the other's
 * writes) and waits until both servers are idle (the other's background work, such as debounced
 * writes or a checkpoint, would otherwise take CPU from this one's run).
 */
async function quiet(children: ServerChild[]): Promise<void> {
  spawnSync("sync");
  await whenIdle(children);
}

/** Two sides measured against each other, and the processes behind them. */
export interface Pair {
  runs: number;
  baseline: Side;
  agentd: Side;
  children: ServerChild[];
}

const rawPair = (bench: Bench): Pair => ({ runs: bench.runs, baseline: bench.raw, agentd: bench.agentd, children: [bench.rawChild, bench.agentdChild] });

/**
 * Warm-up runs, not counted, until both sides' figures settle: unary calls take a few thousand
 * before V8 has optimised both processes. Turns, each far more work, need fewer.
 */
const WARM_UP = { min: 3, max: 10, maxMs: 8_000, settled: 0.05 };
const WARM_UP_TURNS = { min: 2, max: 3, maxMs: 8_000, settled: 0.1 };

/** Measures both sides: warm-up runs, then `runs` interleaved runs. */
async function compareRuns(
  bench: Bench | Pair,
  measure: (side: Side, warmUp: boolean) => Promise<number>,
  warmUp = WARM_UP,
): Promise<{ agentd: number[]; baseline: number[] }> {
  const pair = "raw" in bench ? rawPair(bench) : bench;
  let previous: number[] = [];
  const started = performance.now();
  for (let i = 0; i < warmUp.max; i++) {
    const now = [await measure(pair.baseline, true), await measure(pair.agentd, true)];
    const settled = previous.length > 0 && now.every((figure, side) => Math.abs(figure / previous[side]! - 1) <= warmUp.settled);
    previous = now;
    if (i + 1 >= warmUp.min && (settled || performance.now() - started > warmUp.maxMs)) break;
  }
  const figures = { agentd: [] as number[], baseline: [] as number[] };
  for (let run = 0; run < pair.runs; run++) {
    const order = run % 2 === 0 ? [pair.baseline, pair.agentd] : [pair.agentd, pair.baseline];
    for (const side of order) {
      await quiet(pair.children);
      figures[side.name].push(await measure(side, false));
    }
  }
  return figures;
}

interface RatioSpec {
  key: string;
  title: string;
  unit: Unit;
  baselineName: string;
  /** The largest cost ratio agentd / baseline allowed. */
  maxRatio: number;
}

function ratioRow(spec: RatioSpec, figures: { agentd: number[]; baseline: number[] }): Row {
  const a = median(figures.agentd);
  const b = median(figures.baseline);
  const ratio = spec.unit === "/s" ? b / a : a / b;
  const list = (values: number[]) => values.map((v) => formatFigure(v, spec.unit)).join(", ");
  return {
    key: spec.key,
    title: spec.title,
    agentd: formatFigure(a, spec.unit),
    baseline: `${formatFigure(b, spec.unit)} ${spec.baselineName}`,
    ratio,
    target: `<= ${spec.maxRatio}x`,
    ok: ratio <= spec.maxRatio,
    detail: `agentd [${list(figures.agentd)}] / baseline [${list(figures.baseline)}]`,
  };
}

const encodeCreate = (request: DeepPartial<CreateSessionRequest>) => CreateSessionRequest.encode(CreateSessionRequest.fromPartial(request)).finish();

/** CreateSession p50, ephemeral (vs raw unary) or in the file store (vs raw + fsync). */
export async function createSession(bench: Bench, ephemeral: boolean): Promise<Row> {
  const request = { owner: ephemeral ? "bench-ephemeral" : "bench-file", config: { model: SHORT }, ephemeral };
  const reply = await bench.agentdBytes.unary("CreateSession", encodeCreate(request));
  await setProfile(bench, { unary: { CreateSession: { reply: base64(reply), durable: !ephemeral } } });
  const figures = await compareRuns(bench, async (side) => {
    const latencies = await timedSamples(500, 5_000, async () => {
      await side.client.createSession(request);
    });
    return percentile(latencies, 50);
  });
  return ratioRow(
    {
      key: ephemeral ? "create-ephemeral" : "create-file",
      title: ephemeral ? "CreateSession, ephemeral, p50" : "CreateSession, file store, p50",
      unit: "ms",
      baselineName: ephemeral ? "raw" : "raw+fsync",
      maxRatio: 1.3,
    },
    figures,
  );
}

export async function getSession(bench: Bench): Promise<Row> {
  const sessionId = await bench.agentd.session(SHORT);
  const reply = await bench.agentdBytes.unary("GetSession", GetSessionRequest.encode({ sessionId }).finish());
  await setProfile(bench, { unary: { GetSession: { reply: base64(reply), durable: false } } });
  const figures = await compareRuns(bench, async (side) => {
    const latencies = await timedSamples(1000, 5_000, async () => {
      await side.client.getSession({ sessionId });
    });
    return percentile(latencies, 50);
  });
  return ratioRow({ key: "get", title: "GetSession p50", unit: "ms", baselineName: "raw", maxRatio: 1.3 }, figures);
}

/** A captured agentd turn (StreamGenerate bytes) of `model`, on a session made for it. */
async function captureTurn(bench: Bench, model: object): Promise<Buffer[]> {
  const sessionId = await bench.agentd.session(model, "bench-capture");
  const request = StreamGenerateRequest.encode(StreamGenerateRequest.fromPartial({ sessionId, prompt: "capture" })).finish();
  return bench.agentdBytes.stream("StreamGenerate", request);
}

/**
 * Text deltas per second: `sessions` sessions each streaming `deltas` deltas of 5 characters at once,
 * timed from the calls' start to the last delta. Deltas are counted by their text (a reader that
 * falls behind gets agentd's deltas merged).
 */
export async function streamRate(bench: Bench, sessions: number, deltas: number): Promise<Row> {
  const chunk = 5;
  const captured = await captureTurn(bench, textOf(3 * chunk, chunk));
  await setProfile(bench, { unary: {}, stream: deltaPlan(captured, "x".repeat(chunk), deltas, true) });
  const model = textOf(deltas * chunk, chunk);
  const messages = { agentd: 0, baseline: 0 };
  const figures = await compareRuns(bench, async (side, warmUp) => {
    const rates: number[] = [];
    for (let turn = 0; turn < (sessions === 1 ? 2 : 1); turn++) {
      const ids = await Promise.all(Array.from({ length: sessions }, (_, i) => side.session(model, `bench-stream-${i}`)));
      const t0 = performance.now();
      let lastAt = t0;
      await Promise.all(
        ids.map(async (id) => {
          let chars = 0;
          await streamTurn(side.client, id, "stream", (event, at) => {
            if (event.payload?.$case !== "textDelta") return;
            chars += event.payload.textDelta.text.length;
            lastAt = Math.max(lastAt, at);
            if (!warmUp) messages[side.name]++;
          });
          if (chars !== deltas * chunk) throw new Error(`${side.name}: ${chars} characters streamed, not ${deltas * chunk}`);
        }),
      );
      rates.push((sessions * deltas) / ((lastAt - t0) / 1000));
    }
    return median(rates);
  }, WARM_UP_TURNS);
  const row = ratioRow(
    {
      key: sessions === 1 ? "stream-1" : `stream-${sessions}`,
      title: sessions === 1 ? `streamed deltas/s, one session (${deltas / 1000}k)` : `streamed deltas/s, ${sessions} sessions at once`,
      unit: "/s",
      baselineName: "raw",
      maxRatio: 1.6,
    },
    figures,
  );
  // agentd merges consecutive deltas for a reader that falls behind; the raw server never does.
  const perMessage = (side: "agentd" | "baseline") => (figures[side].length * (sessions === 1 ? 2 : 1) * sessions * deltas) / Math.max(1, messages[side]);
  row.detail += `; deltas per message: agentd ${perMessage("agentd").toFixed(1)}, raw ${perMessage("baseline").toFixed(1)}`;
  return row;
}

/**
 * Time to the first event of a turn of `deltas` one-character deltas (the turn is cancelled after
 * its first event, each sample on a new session) or of a short turn (read to its end).
 */
export async function firstEvent(bench: Bench, long: boolean): Promise<Row> {
  const deltas = 10_000;
  const model = long ? textOf(deltas, 1) : SHORT;
  const captured = await captureTurn(bench, long ? textOf(3, 1) : SHORT);
  await setProfile(bench, { unary: {}, stream: long ? deltaPlan(captured, "x", deltas, true) : verbatimPlan(captured, true) });
  const figures = await compareRuns(bench, async (side) => {
    const shared = long ? "" : await side.session(model, "bench-first");
    const latencies = await timedSamples(long ? 40 : 200, 8_000, async (i) => {
      const sessionId = long ? await side.session(model, "bench-first-long") : shared;
      const t0 = performance.now();
      let first = 0;
      await streamTurn(side.client, sessionId, `q${i}`, (_event, at) => {
        if (first === 0) first = at - t0;
        return long;
      });
      if (long) await side.settle(sessionId);
      return first;
    });
    return percentile(latencies, 50);
  }, long ? WARM_UP_TURNS : WARM_UP);
  return ratioRow(
    {
      key: long ? "first-long" : "first-short",
      title: long ? "first event, 10,000-delta turn, p50" : "first event, short turn, p50",
      unit: "ms",
      baselineName: "raw",
      maxRatio: 1.3,
    },
    figures,
  );
}

/** A turn with one tool call (list_dir), end to end; baseline: the same messages raw, fsync before the last. */
export async function toolTurn(bench: Bench): Promise<Row> {
  const captured = await captureTurn(bench, TOOL);
  await setProfile(bench, { unary: {}, stream: verbatimPlan(captured, true) });
  const figures = await compareRuns(bench, async (side) => {
    const sessionId = await side.session(TOOL, "bench-tool");
    const latencies = await timedSamples(60, 5_000, async (i) => {
      let ended = false;
      await streamTurn(side.client, sessionId, `q${i}`, (event) => {
        if (event.payload?.$case === "turnCompleted") ended = true;
      });
      if (!ended) throw new Error(`${side.name}: the tool turn did not complete`);
    });
    return percentile(latencies, 50);
  });
  return ratioRow(
    { key: "tool", title: `one-tool turn end to end, p50 (${captured.length} msgs)`, unit: "ms", baselineName: "raw+fsync", maxRatio: 1.5 },
    figures,
  );
}

/** A short turn's p50, timed to its turn_completed (which waits until the turn is durable). */
async function acknowledgedTurns(pair: Pair): Promise<{ agentd: number[]; baseline: number[] }> {
  return compareRuns(pair, async (side) => {
    const sessionId = await side.session(SHORT, "bench-store");
    const latencies = await timedSamples(200, 5_000, async (i) => {
      let ended = false;
      await streamTurn(side.client, sessionId, `q${i}`, (event) => {
        if (event.payload?.$case === "turnCompleted") ended = true;
      });
      if (!ended) throw new Error(`${side.name}: the turn did not complete`);
    });
    return percentile(latencies, 50);
  }, WARM_UP_TURNS);
}

/** Per acknowledged turn: agentd on the PostgreSQL store against agentd on the file store. */
export async function postgresTurn(pair: Pair): Promise<Row> {
  const figures = await acknowledgedTurns(pair);
  return ratioRow({ key: "pg-turn", title: "acknowledged turn, PostgreSQL store, p50", unit: "ms", baselineName: "file store", maxRatio: 2 }, figures);
}

/**
 * Two nodes of a cluster: a turn sent to the node that runs the session against the same turn sent
 * to the other node, which forwards it (the pair's sides create their sessions on the first node).
 */
export async function forwardedTurn(pair: Pair): Promise<Row> {
  const figures = await acknowledgedTurns(pair);
  return ratioRow({ key: "forward", title: "turn through a second node (forwarded), p50", unit: "ms", baselineName: "direct", maxRatio: 1.3 }, figures);
}

/** Information for `forward`: the same turn through a bare grpc-js proxy in front of the holder. */
export async function proxiedTurn(pair: Pair): Promise<Row> {
  const figures = await acknowledgedTurns(pair);
  const row = ratioRow({ key: "forward-floor", title: "turn through a bare grpc-js proxy, p50 (information)", unit: "ms", baselineName: "direct", maxRatio: Infinity }, figures);
  return { ...row, target: "information" };
}

/** The same workload on agentd holding `small` and `large` sessions: the large figure over the small one. */
export async function flat(
  runs: number,
  kind: "list" | "create",
  small: { client: AgentdClient; count: number },
  large: { client: AgentdClient; count: number },
): Promise<Row> {
  const measure = async (client: AgentdClient) => {
    const latencies = await timedSamples(kind === "list" ? 100 : 300, 3_000, async () => {
      if (kind === "list") {
        const page = await client.listSessions({ pageSize: 100 });
        if (page.sessions.length !== 100) throw new Error(`ListSessions returned ${page.sessions.length} sessions, not 100`);
      } else {
        await client.createSession({ owner: "bench-flat", config: { model: SHORT } });
      }
    });
    return percentile(latencies, 50);
  };
  await measure(small.client);
  await measure(large.client);
  const atSmall: number[] = [];
  const atLarge: number[] = [];
  for (let run = 0; run < runs; run++) {
    if (run % 2 === 0) {
      atSmall.push(await measure(small.client));
      atLarge.push(await measure(large.client));
    } else {
      atLarge.push(await measure(large.client));
      atSmall.push(await measure(small.client));
    }
  }
  const label = (n: number) => (n >= 1000 ? `${n / 1000}k` : String(n));
  const row = ratioRow(
    {
      key: kind === "list" ? "list-flat" : "create-flat",
      title: kind === "list" ? `ListSessions page of 100, ${label(large.count)} vs ${label(small.count)}` : `CreateSession (file), ${label(large.count)} vs ${label(small.count)}`,
      unit: "ms",
      baselineName: `at ${label(small.count)}`,
      maxRatio: 1.5,
    },
    { agentd: atLarge, baseline: atSmall },
  );
  return row;
}

/** Heap per idle ephemeral session: heap after full collections, before and after creating `count`. */
export async function heapPerSession(runs: number, child: ServerChild, count: number): Promise<Row> {
  const client = new AgentdClient(child.address);
  const create = async (n: number) => {
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next++ < n) await client.createSession({ owner: "bench-heap", config: { model: SHORT }, ephemeral: true });
      }),
    );
  };
  try {
    await create(Math.min(500, count));
    const perSession: number[] = [];
    for (let run = 0; run < runs; run++) {
      const before = await child.request<number>({ type: "heap" });
      await create(count);
      const after = await child.request<number>({ type: "heap" });
      perSession.push((after - before) / count);
    }
    const figure = median(perSession);
    return {
      key: "heap",
      title: `heap per idle ephemeral session (${count} per run)`,
      agentd: formatFigure(figure, "B"),
      baseline: "",
      ratio: null,
      target: "<= 1200 B",
      ok: figure <= 1200,
      detail: perSession.map((v) => formatFigure(v, "B")).join(", "),
    };
  } finally {
    client.close();
  }
}

/** Time from starting a server process until it answers a call (GetSession of an unknown id). */
export async function timeToAnswer(child: ServerChild): Promise<number> {
  const client = new AgentdClient(child.address);
  try {
    for (;;) {
      try {
        await client.getSession({ sessionId: "no-such-session" });
        break;
      } catch (error) {
        if ((error as ServiceError).code === status.NOT_FOUND) break;
        if ((error as ServiceError).code !== status.UNAVAILABLE) throw error;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    }
    return performance.now() - child.spawnedAt;
  } finally {
    client.close();
  }
}

async function setProfile(bench: Bench, profile: RawProfile): Promise<void> {
  await bench.rawChild.request({ type: "profile", profile });
}
