import { randomUUID } from "node:crypto";
import { Observable } from "rxjs";
import { AgentdError, errorMessage, isAbortError, statusName } from "../errors.js";
import { StopReason } from "../gen/agentd/v1/runtime.js";
import { LlmError, type LlmClient, type LlmMessage, type LlmToolCall, type LlmToolDefinition } from "../llm/types.js";
import type { ToolOutput } from "../tools/types.js";
import type { SessionLimits, StoredMessage, UsageTotals } from "../session/types.js";
import { cancelReasonOf } from "./cancellation.js";
import type { EventPayload } from "./events.js";

/** What the loop needs from the session it runs in. */
export interface TurnHost {
  /** The conversation so far, in the model's terms. */
  history(): LlmMessage[];
  appendMessage(message: Omit<StoredMessage, "id" | "createdAt" | "turnId">): void;
  /** Adds a model call's usage to the session and returns the session's new totals. */
  addUsage(usage: UsageTotals): UsageTotals;
  /** Resolves at once unless the session is paused; rejects when the turn is cancelled. */
  waitIfPaused(signal: AbortSignal): Promise<void>;
}

export interface ToolRunner {
  definitions(): LlmToolDefinition[];
  execute(call: { name: string; argumentsJson: string }, signal: AbortSignal): Promise<ToolOutput>;
}

export interface TurnInput {
  turnId: string;
  prompt: string;
  systemPrompt: string;
  limits: SessionLimits;
  temperature?: number;
  maxOutputTokens?: number;
  llm: LlmClient;
  tools: ToolRunner;
  host: TurnHost;
  signal: AbortSignal;
}

/**
 * Runs one turn: call the model, run the tools it asks for, feed the results back, until the model
 * answers without tool calls or the round limit is reached. The returned Observable emits event
 * payloads and always ends with exactly one terminal payload (turnCompleted, error or cancelled);
 * it never errors. Cancellation is the input's signal, owned by the session.
 */
export function runTurn(input: TurnInput): Observable<EventPayload> {
  return new Observable<EventPayload>((subscriber) => {
    void new TurnRun(input, (payload) => subscriber.next(payload)).run().then(() => subscriber.complete());
  });
}

class TurnRun {
  private readonly turnUsage: UsageTotals = { inputTokens: 0, outputTokens: 0 };
  /** Tool calls the model asked for whose results are not in the history yet. */
  private unanswered: LlmToolCall[] = [];
  private partialText = "";
  private toolRounds = 0;

  constructor(
    private readonly input: TurnInput,
    private readonly emit: (payload: EventPayload) => void,
  ) {}

  async run(): Promise<void> {
    const { host, prompt } = this.input;
    host.appendMessage({ role: "user", text: prompt, toolCalls: [] });
    this.emit({ $case: "turnStarted", turnStarted: { prompt } });
    try {
      const result = await this.loop();
      this.emit({ $case: "turnCompleted", turnCompleted: { result } });
    } catch (error) {
      this.closeDanglingWork(error);
      if (isAbortError(error, this.input.signal)) {
        this.emit({ $case: "cancelled", cancelled: { reason: cancelReasonOf(this.input.signal) } });
      } else {
        this.emit({ $case: "error", error: describeFailure(error) });
      }
    }
  }

  private async loop() {
    const { host, signal, limits } = this.input;
    const { llm } = this.input;
    for (;;) {
      await host.waitIfPaused(signal);
      const { text, toolCalls, stopReason } = await this.callModel(llm);
      host.appendMessage({ role: "assistant", text, toolCalls });
      this.partialText = "";
      if (toolCalls.length === 0) {
        return this.result(text, stopReason === "max_tokens" ? StopReason.STOP_REASON_MAX_TOKENS : StopReason.STOP_REASON_END_TURN);
      }
      this.unanswered = [...toolCalls];
      if (this.toolRounds >= limits.maxToolRounds) {
        this.answerUnanswered(`not run: the turn reached its limit of ${limits.maxToolRounds} tool rounds`);
        return this.result(text, StopReason.STOP_REASON_MAX_TOOL_ROUNDS);
      }
      this.toolRounds++;
      for (const call of toolCalls) {
        await host.waitIfPaused(signal);
        this.emit({ $case: "toolCall", toolCall: { id: call.id, name: call.name, argumentsJson: call.argumentsJson } });
        const outcome = await this.input.tools.execute(call, signal);
        const toolResult = { callId: call.id, name: call.name, output: outcome.output, isError: outcome.isError };
        host.appendMessage({ role: "tool", text: "", toolCalls: [], toolResult });
        this.unanswered.shift();
        this.emit({ $case: "toolResult", toolResult });
      }
    }
  }

  private async callModel(llm: LlmClient) {
    const { host, signal } = this.input;
    const request = {
      systemPrompt: this.input.systemPrompt,
      messages: host.history(),
      tools: this.input.tools.definitions(),
      temperature: this.input.temperature,
      maxOutputTokens: this.input.maxOutputTokens,
    };
    const toolCalls: LlmToolCall[] = [];
    const step: UsageTotals = { inputTokens: 0, outputTokens: 0 };
    let stopReason = "end_turn";
    for await (const chunk of llm.stream(request, signal)) {
      switch (chunk.type) {
        case "text":
          this.partialText += chunk.delta;
          this.emit({ $case: "textDelta", textDelta: { text: chunk.delta } });
          break;
        case "tool_call":
          toolCalls.push({ ...chunk.call, id: chunk.call.id || `call_${randomUUID()}` });
          break;
        case "usage":
          step.inputTokens += chunk.usage.inputTokens;
          step.outputTokens += chunk.usage.outputTokens;
          break;
        case "done":
          stopReason = chunk.stopReason;
          break;
      }
    }
    signal.throwIfAborted();
    this.reportUsage(step);
    return { text: this.partialText, toolCalls, stopReason };
  }

  private reportUsage(step: UsageTotals): void {
    this.turnUsage.inputTokens += step.inputTokens;
    this.turnUsage.outputTokens += step.outputTokens;
    const session = this.input.host.addUsage(step);
    this.emit({
      $case: "usage",
      usage: { step: toUsage(step), turn: toUsage(this.turnUsage), session: toUsage(session) },
    });
  }

  private result(text: string, stopReason: StopReason) {
    return { turnId: this.input.turnId, text, stopReason, usage: toUsage(this.turnUsage), toolRounds: this.toolRounds };
  }

  /**
   * Keeps the history well-formed after an interrupted turn: the text the client already saw is
   * kept, and every tool call the model made gets a result, because providers reject a
   * conversation with unanswered tool calls.
   */
  private closeDanglingWork(error: unknown): void {
    if (this.partialText !== "") {
      this.input.host.appendMessage({ role: "assistant", text: this.partialText, toolCalls: [] });
      this.partialText = "";
    }
    const why = isAbortError(error, this.input.signal) ? "cancelled before it finished" : "not run: the turn failed";
    this.answerUnanswered(why);
  }

  private answerUnanswered(output: string): void {
    for (const call of this.unanswered) {
      this.input.host.appendMessage({
        role: "tool",
        text: "",
        toolCalls: [],
        toolResult: { callId: call.id, name: call.name, output, isError: true },
      });
    }
    this.unanswered = [];
  }
}

function toUsage(usage: UsageTotals) {
  return {
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    totalTokens: usage.inputTokens + usage.outputTokens,
  };
}

function describeFailure(error: unknown): { code: string; message: string } {
  if (error instanceof LlmError) return { code: error.code, message: error.message };
  if (error instanceof AgentdError) return { code: statusName(error.code), message: error.message };
  return { code: "INTERNAL", message: errorMessage(error) };
}
