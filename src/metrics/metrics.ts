import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { SessionEvent } from "../events/types.js";
import type { RuntimeStats } from "../runtime/runtime.js";
import type { SessionView } from "../session/session.js";
import type { UsageTotals } from "../session/types.js";

/** Seconds: a tool call or a model step is quick or takes minutes; a turn may take an hour. */
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Distinct models, and tools, that get a label of their own (a client names them, a model invents tool names). */
const MAX_LABEL_VALUES = 200;
const TURN_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];

interface RunningTurn {
  startMs: number;
  /** When the current model step began: the turn's start, or the last tool result. */
  stepMs: number;
  model: string;
}

/**
 * agentd's Prometheus metrics (prom-client). Counters and histograms follow the sessions' events as
 * they go out (the runtime's `observe` hook); gauges read the runtime when they are scraped.
 */
export class AgentdMetrics {
  readonly registry = new Registry();
  private readonly turns = new Map<string, RunningTurn>();
  private readonly toolCalls = new Map<string, { startMs: number; name: string }>();
  private readonly asked = new Map<string, { atMs: number; sessionId: string }>();
  /** Label values seen, per label: names come from clients and models, so their number is capped. */
  private readonly models = new Set<string>();
  private readonly tools = new Set<string>();
  /** The runtime as this scrape reads it. */
  private reading: RuntimeStats | null = null;

  private readonly turnsTotal: Counter<"outcome">;
  private readonly turnSeconds: Histogram<"outcome">;
  private readonly modelSeconds: Histogram<"model">;
  private readonly tokens: Counter<"model" | "kind">;
  private readonly cost: Counter<"model">;
  private readonly toolsTotal: Counter<"tool" | "outcome">;
  private readonly toolSeconds: Histogram<"tool">;
  private readonly confirmationSeconds: Histogram<"outcome">;
  private readonly persistenceFailures: Counter;
  private readonly grpcCalls: Counter<"method" | "code">;

  /**
   * `runsHere`: whether this node still runs a session. A session that leaves mid-turn (its tree
   * taken by another node) sends no end here; a scrape lets go of what it left behind.
   */
  constructor(
    stats: () => RuntimeStats,
    private readonly runsHere: (sessionId: string) => boolean = () => true,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.turnsTotal = new Counter({ name: "agentd_turns_total", help: "Turns that ended, by outcome (completed, failed, cancelled).", labelNames: ["outcome"], registers });
    this.turnSeconds = new Histogram({ name: "agentd_turn_duration_seconds", help: "From a turn's start to its end.", labelNames: ["outcome"], buckets: TURN_BUCKETS, registers });
    this.modelSeconds = new Histogram({
      name: "agentd_model_call_duration_seconds",
      help: "A model call: from its request (the turn's start, or the last tool result) to its usage report.",
      labelNames: ["model"],
      buckets: STEP_BUCKETS,
      registers,
    });
    this.tokens = new Counter({ name: "agentd_model_tokens_total", help: "Tokens the models reported, by model and kind (input, output).", labelNames: ["model", "kind"], registers });
    this.cost = new Counter({ name: "agentd_model_cost_usd_total", help: "What the model calls cost in US dollars, at the server's prices, by model.", labelNames: ["model"], registers });
    this.toolsTotal = new Counter({ name: "agentd_tool_calls_total", help: "Tool calls that returned, by tool and outcome (ok, error).", labelNames: ["tool", "outcome"], registers });
    this.toolSeconds = new Histogram({
      name: "agentd_tool_call_duration_seconds",
      help: "From the model's tool call to its result (a person's confirmation included).",
      labelNames: ["tool"],
      buckets: STEP_BUCKETS,
      registers,
    });
    this.confirmationSeconds = new Histogram({
      name: "agentd_confirmation_wait_seconds",
      help: "How long a tool call waited for a person, by outcome (approved, rejected, timed_out, cancelled).",
      labelNames: ["outcome"],
      buckets: TURN_BUCKETS,
      registers,
    });
    this.persistenceFailures = new Counter({ name: "agentd_persistence_failures_total", help: "Writes to the session store that failed (each is retried).", registers });
    this.grpcCalls = new Counter({ name: "agentd_grpc_calls_total", help: "gRPC calls that ended, by method and status code.", labelNames: ["method", "code"], registers });

    // The gauges read the runtime once per scrape (each gauge's collect asks; one reading serves all).
    const now = (): RuntimeStats => (this.reading ??= stats());
    new Gauge({
      name: "agentd_sessions",
      help: "Live sessions on this node, by state.",
      labelNames: ["state"],
      registers,
      collect() {
        const byState = now().sessionsByState;
        for (const state of ["idle", "running", "paused"]) this.set({ state }, byState[state] ?? 0);
      },
    });
    new Gauge({ name: "agentd_confirmations_pending", help: "Tool calls waiting for a person now.", registers, collect() { this.set(now().pendingConfirmations); } });
    new Gauge({ name: "agentd_persistence_pending_sessions", help: "Sessions whose latest state has not reached the store yet.", registers, collect() { this.set(now().unpersistedSessions); } });
    new Gauge({ name: "agentd_persistence_lag_seconds", help: "How long the oldest change not yet in the store has waited (0 when everything is stored).", registers, collect() { this.set(now().persistenceLagSeconds); } });
    new Gauge({ name: "agentd_event_log_memory_bytes", help: "Bytes of recent events kept in memory for clients that re-attach.", registers, collect() { this.set(now().eventMemoryBytes); } });
  }

  /** The metrics in Prometheus's text format, the runtime read afresh. */
  async text(): Promise<string> {
    this.reading = null;
    this.forgetSessionsGone();
    try {
      return await this.registry.metrics();
    } finally {
      this.reading = null;
    }
  }

  /** A session's event as it goes out. Subagents' events are counted on their own sessions, not as relayed. */
  observe(session: SessionView, event: SessionEvent): void {
    const payload = event.payload;
    const at = event.timeMs;
    switch (payload.type) {
      case "turn_started": {
        const model = this.modelLabel(session);
        this.turns.set(session.id, { startMs: at, stepMs: at, model });
        return;
      }
      case "tool_call":
        this.toolCalls.set(`${session.id}/${payload.call.id}`, { startMs: at, name: this.label(this.tools, payload.call.name) });
        return;
      case "tool_result": {
        const key = `${session.id}/${payload.result.callId}`;
        const started = this.toolCalls.get(key);
        this.toolCalls.delete(key);
        const tool = started?.name ?? this.label(this.tools, payload.result.name);
        this.toolsTotal.inc({ tool, outcome: payload.result.isError ? "error" : "ok" });
        if (started) this.toolSeconds.observe({ tool }, (at - started.startMs) / 1000);
        const turn = this.turns.get(session.id);
        if (turn) turn.stepMs = at;
        return;
      }
      case "usage": {
        // A subagent's spending relayed to the calling turn: its model calls were counted on its own session.
        if (payload.subagent) return;
        const turn = this.turns.get(session.id);
        const model = turn?.model ?? "none";
        if (turn) {
          this.modelSeconds.observe({ model }, (at - turn.stepMs) / 1000);
          turn.stepMs = at;
        }
        this.countSpending(model, payload.step);
        return;
      }
      case "context_compacted": {
        // A summary is a model call the session pays for, outside the turn's usage events.
        this.countSpending(this.modelLabel(session), payload.report.summaryUsage);
        return;
      }
      case "confirmation_required":
        this.asked.set(payload.confirmation.id, { atMs: at, sessionId: session.id });
        return;
      case "confirmation_resolved": {
        const askedAt = this.asked.get(payload.confirmationId);
        this.asked.delete(payload.confirmationId);
        if (askedAt !== undefined) this.confirmationSeconds.observe({ outcome: payload.resolution.outcome }, (at - askedAt.atMs) / 1000);
        return;
      }
      case "turn_completed":
      case "turn_failed":
      case "turn_cancelled": {
        const outcome = payload.type === "turn_completed" ? "completed" : payload.type === "turn_failed" ? "failed" : "cancelled";
        this.turnsTotal.inc({ outcome });
        const turn = this.turns.get(session.id);
        this.turns.delete(session.id);
        if (turn) this.turnSeconds.observe({ outcome }, (at - turn.startMs) / 1000);
        for (const key of this.toolCalls.keys()) if (key.startsWith(`${session.id}/`)) this.toolCalls.delete(key);
        return;
      }
      case "persistence_failed":
        this.persistenceFailures.inc();
        return;
      default:
        return;
    }
  }

  private modelLabel(session: SessionView): string {
    const model = session.config.model;
    return this.label(this.models, model ? `${model.provider}/${model.model}` : "none");
  }

  private countSpending(model: string, usage: UsageTotals): void {
    if (usage.inputTokens > 0) this.tokens.inc({ model, kind: "input" }, usage.inputTokens);
    if (usage.outputTokens > 0) this.tokens.inc({ model, kind: "output" }, usage.outputTokens);
    if ((usage.costUsd ?? 0) > 0) this.cost.inc({ model }, usage.costUsd);
  }

  private forgetSessionsGone(): void {
    for (const id of this.turns.keys()) if (!this.runsHere(id)) this.turns.delete(id);
    for (const key of this.toolCalls.keys()) if (!this.runsHere(key.slice(0, key.indexOf("/")))) this.toolCalls.delete(key);
    for (const [id, asked] of this.asked) if (!this.runsHere(asked.sessionId)) this.asked.delete(id);
  }

  /** `value` as a label: the first MAX_LABEL_VALUES distinct ones as they are, later ones as "other". */
  private label(seen: Set<string>, value: string): string {
    if (seen.has(value)) return value;
    if (seen.size >= MAX_LABEL_VALUES) return "other";
    seen.add(value);
    return value;
  }

  /** A gRPC call ended with status `code` (its name: OK, NOT_FOUND...). */
  grpcCall(method: string, code: string): void {
    this.grpcCalls.inc({ method, code });
  }
}
