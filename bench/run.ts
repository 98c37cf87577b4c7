/**
 * `npm run bench` (or `make bench`): agentd against baselines measured in the same run, then the
 * absolute benchmarks as information.
 *
 * Each server runs in its own child process (bench/children.ts): a raw @grpc/grpc-js server with no
 * agentd code that answers with the bytes agentd sends (bench/raw-server.ts), optionally after one
 * append + fdatasync with group commit; and agentd started as in production (bench/agentd-server.ts).
 * This process is the client. Targets are ratios (agentd's cost / the baseline's), so they hold on
 * any machine; a few are absolute (restore time, heap per session). Exits 1 when a target is missed.
 *
 * Environment:
 *   BENCH_RUNS=5              runs per workload (the figure is the median of the runs' figures)
 *   BENCH_ONLY=create,tool    only the workloads whose key contains one of these words ("info":
 *                             the absolute benchmarks); BENCH_SKIP the same, to leave some out
 *   BENCH_LARGE=100000        sessions of the large data directory (restore, "flat" workloads)
 *   BENCH_SMALL=1000          sessions of the small one
 *   BENCH_HEAP_SESSIONS=2000  sessions created per run for the heap measure
 *   BENCH_RESTORE_RUNS=1      server starts on the large directory (each takes as long as a restore)
 *   BENCH_SEED_DIR=/dev/shm   where seeded data directories go (default /dev/shm when present)
 */
import { existsSync, readdirSync, rmSync } from "node:fs";
import { mkdir, mkdtemp } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir } from "node:os";
import path from "node:path";
import { AgentdClient } from "../src/client/client.js";
import { resolveConfig, type ConfigOverrides } from "../src/config/config.js";
import { serverOptions } from "../src/server/server.js";
import { runAbsoluteBenchmarks, type AbsoluteResult } from "./absolute.js";
import { removeOnExit, runScript, startChild, type ServerChild } from "./children.js";
import {
  agentdSide,
  createSession,
  firstEvent,
  flat,
  formatFigure,
  getSession,
  heapPerSession,
  postgresTurn,
  forwardedTurn,
  proxiedTurn,
  rawSide,
  streamRate,
  timeToAnswer,
  toolTurn,
  type Bench,
  type Row,
} from "./compare.js";
import { ByteClient, median } from "./measure.js";
import pg from "pg";
import { startPostgresServer } from "../test/helpers/postgres-server.js";

const envInt = (name: string, fallback: number) => {
  const value = process.env[name];
  if (value === undefined || value === "") return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`${name} must be a positive integer, got "${value}"`);
  return parsed;
};
const words = (name: string) => (process.env[name] ?? "").split(",").map((w) => w.trim()).filter(Boolean);

const RUNS = envInt("BENCH_RUNS", 5);
const LARGE = envInt("BENCH_LARGE", 100_000);
const SMALL = envInt("BENCH_SMALL", 1_000);
const HEAP_SESSIONS = envInt("BENCH_HEAP_SESSIONS", 2_000);
const RESTORE_RUNS = envInt("BENCH_RESTORE_RUNS", 1);
const ONLY = words("BENCH_ONLY");
const SKIP = words("BENCH_SKIP");
const selected = (key: string) => (ONLY.length === 0 || ONLY.some((w) => key.includes(w))) && !SKIP.some((w) => key.includes(w));

/** Workloads against the raw server, in the order of the table. */
const RAW_WORKLOADS: Array<{ key: string; run(bench: Bench): Promise<Row> }> = [
  { key: "create-ephemeral", run: (bench) => createSession(bench, true) },
  { key: "create-file", run: (bench) => createSession(bench, false) },
  { key: "get", run: (bench) => getSession(bench) },
  { key: "stream-1", run: (bench) => streamRate(bench, 1, 20_000) },
  { key: "stream-100", run: (bench) => streamRate(bench, 100, 1_000) },
  { key: "first-short", run: (bench) => firstEvent(bench, false) },
  { key: "first-long", run: (bench) => firstEvent(bench, true) },
  { key: "tool", run: (bench) => toolTurn(bench) },
];
const KEYS = [...RAW_WORKLOADS.map((w) => w.key), "pg-turn", "forward", "list-flat", "create-flat", "restore", "heap", "info"];

/** agentd's configuration in every child: production defaults, a data directory, room for many sessions. */
function agentdConfig(dataDir: string): ConfigOverrides {
  return {
    host: "127.0.0.1",
    port: 0,
    dataDir,
    store: "file",
    logLevel: "info",
    logFormat: "json",
    limits: { maxSessions: 10_000_000, maxSessionsPerOwner: 10_000_000, maxConcurrentTurnsPerOwner: 10_000 },
  };
}

const log = (line: string) => process.stderr.write(`${line}\n`);
const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`;

function logRow(row: Row): void {
  const ratio = row.ratio === null ? "" : ` = ${row.ratio.toFixed(2)}x`;
  log(`  ${row.ok ? "ok  " : "MISS"} ${row.key.padEnd(17)} ${row.agentd} vs ${row.baseline || "-"}${ratio} (target ${row.target}; runs: ${row.detail})`);
}

async function rawComparisons(work: string, rows: Row[]): Promise<void> {
  const workloads = RAW_WORKLOADS.filter((w) => selected(w.key));
  if (workloads.length === 0) return;
  const rawDir = path.join(work, "raw");
  await mkdir(rawDir);
  const rawChild = await startChild("raw grpc-js server", "./raw-server.ts", { dir: rawDir, options: serverOptions(resolveConfig({})) });
  const agentdChild = await startChild("agentd", "./agentd-server.ts", agentdConfig(path.join(work, "agentd")));
  log(`agentd answered ${seconds(await timeToAnswer(agentdChild))} after its process started (empty data directory)`);
  const rawClient = new AgentdClient(rawChild.address);
  const agentdClient = new AgentdClient(agentdChild.address);
  const agentdBytes = new ByteClient(agentdChild.address);
  const bench: Bench = { runs: RUNS, agentd: agentdSide(agentdClient), raw: rawSide(rawClient), rawChild, agentdChild, agentdBytes };
  try {
    for (const workload of workloads) {
      const t0 = performance.now();
      const row = await workload.run(bench);
      rows.push(row);
      logRow(row);
      log(`       (${seconds(performance.now() - t0)})`);
    }
  } finally {
    rawClient.close();
    agentdClient.close();
    agentdBytes.close();
    await Promise.all([rawChild.stop(), agentdChild.stop()]);
  }
}

/**
 * On a PostgreSQL the bench starts: agentd on the PostgreSQL store against agentd on the file store,
 * and a turn forwarded by a second node of a cluster against the same turn sent to its holder.
 */
async function postgresComparisons(work: string, rows: Row[]): Promise<void> {
  const wanted = ["pg-turn", "forward"].filter(selected);
  if (wanted.length === 0) return;
  const database = await startPostgresServer();
  const children: ServerChild[] = [];
  const clients: AgentdClient[] = [];
  const start = async (name: string, overrides: ConfigOverrides) => {
    const child = await startChild(name, "./agentd-server.ts", { ...agentdConfig(path.join(work, name.replace(/\W+/g, "-"))), ...overrides });
    children.push(child);
    const client = new AgentdClient(child.address);
    clients.push(client);
    return { child, client };
  };
  const measure = async (run: () => Promise<Row>) => {
    const t0 = performance.now();
    const row = await run();
    rows.push(row);
    logRow(row);
    log(`       (${seconds(performance.now() - t0)})`);
  };
  try {
    if (wanted.includes("pg-turn")) {
      const file = await start("agentd (file store)", {});
      const pg = await start("agentd (postgres store)", { store: "postgres", database: { url: await newDatabase(database.url, "store") } });
      await measure(() => postgresTurn({ runs: RUNS, baseline: { ...agentdSide(file.client), name: "baseline" }, agentd: agentdSide(pg.client), children: [file.child, pg.child] }));
    }
    if (wanted.includes("forward")) {
      const cluster: ConfigOverrides = { store: "postgres", database: { url: await newDatabase(database.url, "cluster") }, cluster: { enabled: true, leaseMs: 10_000 } };
      const holder = await start("agentd (cluster node 1)", cluster);
      const other = await start("agentd (cluster node 2)", cluster);
      // Both sides' sessions live on node 1; the measured side sends its turns to node 2.
      const direct = agentdSide(holder.client);
      const forwarded = { ...agentdSide(other.client), session: direct.session };
      await measure(() => forwardedTurn({ runs: RUNS, baseline: { ...direct, name: "baseline" }, agentd: forwarded, children: [holder.child, other.child] }));
      // The same hop through a bare grpc-js proxy: what a second process costs on this machine.
      const proxy = await startChild("raw grpc-js proxy", "./raw-proxy.ts", { target: holder.child.address });
      children.push(proxy);
      const proxyClient = new AgentdClient(proxy.address);
      clients.push(proxyClient);
      const proxied = { ...agentdSide(proxyClient), session: direct.session };
      await measure(() => proxiedTurn({ runs: RUNS, baseline: { ...direct, name: "baseline" }, agentd: proxied, children: [holder.child, proxy] }));
    }
  } finally {
    for (const client of clients) client.close();
    await Promise.all(children.map((child) => child.stop()));
    await database.destroy();
  }
}

/** A new, empty database on the bench's PostgreSQL; its URL. */
async function newDatabase(adminUrl: string, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
  } finally {
    await client.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

/** Restore time at LARGE sessions, and ListSessions / CreateSession at SMALL vs LARGE sessions. */
async function scaleComparisons(rows: Row[]): Promise<void> {
  const wantRestore = selected("restore");
  const flatKinds = (["list", "create"] as const).filter((kind) => selected(`${kind}-flat`));
  if (!wantRestore && flatKinds.length === 0) return;
  const seedRoot = process.env.BENCH_SEED_DIR ?? (existsSync("/dev/shm") ? "/dev/shm" : tmpdir());
  removeStale(seedRoot);
  const seeds = await mkdtemp(path.join(seedRoot, `agentd-bench-seed-${process.pid}-`));
  removeOnExit(seeds);
  const t0 = performance.now();
  const largeDir = path.join(seeds, "large");
  const smallDir = path.join(seeds, "small");
  await runScript("./seed-store.ts", [largeDir, String(LARGE)]);
  if (flatKinds.length > 0) await runScript("./seed-store.ts", [smallDir, String(SMALL)]);
  log(`seeded ${LARGE}${flatKinds.length > 0 ? ` and ${SMALL}` : ""} stored sessions in ${seeds} (${seconds(performance.now() - t0)})`);

  let small: ServerChild | undefined;
  let large: ServerChild | undefined;
  const clients: AgentdClient[] = [];
  try {
    // What starting costs without sessions (node, tsx, the server's modules), for the restore row.
    let emptyStart = Number.NaN;
    if (wantRestore) {
      const empty = await startChild("agentd (empty)", "./agentd-server.ts", agentdConfig(path.join(seeds, "empty")));
      emptyStart = await timeToAnswer(empty);
      await empty.stop();
    }
    let smallStart = Number.NaN;
    if (flatKinds.length > 0) {
      small = await startChild(`agentd (${SMALL} sessions)`, "./agentd-server.ts", agentdConfig(smallDir));
      smallStart = await timeToAnswer(small);
      log(`agentd with ${SMALL} stored sessions answered ${seconds(smallStart)} after its process started`);
    }
    const starts: number[] = [];
    large = await startChild(`agentd (${LARGE} sessions)`, "./agentd-server.ts", agentdConfig(largeDir));
    starts.push(await timeToAnswer(large));
    log(`agentd with ${LARGE} stored sessions answered ${seconds(starts[0]!)} after its process started`);
    if (small && large) {
      const smallClient = new AgentdClient(small.address);
      const largeClient = new AgentdClient(large.address);
      clients.push(smallClient, largeClient);
      for (const kind of flatKinds) {
        const t1 = performance.now();
        const row = await flat(RUNS, kind, { client: smallClient, count: SMALL }, { client: largeClient, count: LARGE });
        rows.push(row);
        logRow(row);
        log(`       (${seconds(performance.now() - t1)})`);
      }
    }
    if (wantRestore) {
      for (let run = 1; run < RESTORE_RUNS; run++) {
        await large.stop();
        large = await startChild(`agentd (${LARGE} sessions)`, "./agentd-server.ts", agentdConfig(largeDir));
        starts.push(await timeToAnswer(large));
      }
      const figure = median(starts);
      const row: Row = {
        key: "restore",
        title: `restore ${LARGE / 1000}k sessions: start to first answer`,
        agentd: formatFigure(figure / 1000, "s"),
        baseline: `${formatFigure(emptyStart / 1000, "s")} empty dir`,
        ratio: null,
        target: "< 5 s",
        ok: figure < 5_000,
        detail: starts.map((ms) => formatFigure(ms / 1000, "s")).join(", "),
      };
      rows.push(row);
      logRow(row);
    }
  } finally {
    for (const client of clients) client.close();
    await Promise.all([small?.stop(), large?.stop()]);
  }
}

/** Directories left by a bench that was killed (a seeded one takes 1 GiB or more, in memory under /dev/shm). */
function removeStale(root: string): void {
  for (const name of readdirSync(root)) {
    const pid = Number(/^agentd-bench-(?:seed-)?(\d+)-/.exec(name)?.[1]);
    if (!pid || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      rmSync(path.join(root, name), { recursive: true, force: true });
    }
  }
}

async function heapComparison(work: string, rows: Row[]): Promise<void> {
  if (!selected("heap")) return;
  const child = await startChild("agentd (heap)", "./agentd-server.ts", agentdConfig(path.join(work, "agentd-heap")));
  try {
    const row = await heapPerSession(RUNS, child, HEAP_SESSIONS);
    rows.push(row);
    logRow(row);
  } finally {
    await child.stop();
  }
}

function printTable(rows: Row[]): void {
  const header = ["workload", "agentd", "baseline", "ratio", "target", ""];
  const cells = rows.map((r) => [r.title, r.agentd, r.baseline || "-", r.ratio === null ? "-" : `${r.ratio.toFixed(2)}x`, r.target, r.ok ? "ok" : "MISS"]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `  ${c.map((cell, i) => (i === 0 || i === 2 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ")}`;
  console.log(`\nagentd against baselines (median of ${RUNS} runs; ratio = agentd's time / the baseline's)`);
  console.log(line(header));
  console.log(line(widths.map((w) => "-".repeat(w))));
  for (const c of cells) console.log(line(c));
}

function printAbsolute(results: AbsoluteResult[]): void {
  console.log("\nabsolute figures (information; client and server in one process; not part of the exit code)");
  for (const r of results) {
    console.log(`  ${r.ok ? "ok  " : "MISS"} ${r.name.padEnd(44)} ${r.value.toFixed(2).padStart(10)} ${r.unit.padEnd(9)} target ${r.target}`);
  }
}

async function main(): Promise<number> {
  const started = performance.now();
  const unknown = [...ONLY, ...SKIP].filter((w) => !KEYS.some((key) => key.includes(w)));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY/BENCH_SKIP: no workload matches ${unknown.join(", ")}; keys: ${KEYS.join(", ")}`);
  log(`agentd bench: ${RUNS} runs, node ${process.version}, ${availableParallelism()} CPUs (${cpus()[0]?.model ?? "?"})`);
  removeStale(tmpdir());
  const work = await mkdtemp(path.join(tmpdir(), `agentd-bench-${process.pid}-`));
  removeOnExit(work);
  const rows: Row[] = [];
  await rawComparisons(work, rows);
  await postgresComparisons(work, rows);
  await scaleComparisons(rows);
  await heapComparison(work, rows);
  let absolute: AbsoluteResult[] = [];
  if (selected("info")) {
    log("absolute benchmarks (information)...");
    absolute = await runAbsoluteBenchmarks();
  }
  if (rows.length > 0) printTable(rows);
  if (absolute.length > 0) printAbsolute(absolute);
  const missed = rows.filter((r) => !r.ok);
  console.log(`\n${rows.length - missed.length} of ${rows.length} targets met${missed.length > 0 ? `; missed: ${missed.map((r) => r.key).join(", ")}` : ""}; total ${seconds(performance.now() - started)}`);
  return missed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(2);
  },
);
