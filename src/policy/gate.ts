import { randomUUID } from "node:crypto";
import { abortError } from "../llm/abort.js";
import { argumentsObjectOrEmpty } from "../llm/provider.js";
import { cancelReasonOf } from "../agent/cancellation.js";
import { TurnSuspended, type Admission, type ToolGate } from "../agent/loop.js";
import type { TurnContext } from "../agent/turn-context.js";
import type { TurnEvent } from "../events/types.js";
import type { LlmToolCall } from "../llm/types.js";
import type { ConfirmationBook, PendingConfirmation, Resolution } from "./confirmations.js";
import type { RuleSet } from "./rules.js";
import type { ConfirmationSettings } from "./types.js";

export interface PolicyGateDeps {
  sessionId: string;
  workspace: string;
  /** Read for every call, so a rule added by "always" applies to the next call of the same turn. */
  rules(): RuleSet;
  settings(): ConfirmationSettings;
  book: ConfirmationBook;
  isReadOnly(toolName: string): boolean;
  /** Whether the session offers a tool of that name; a call of any other is not worth a person's question. */
  isOffered(toolName: string): boolean;
  /** A confirmation a resumed turn was waiting on before the restart: asked again as it was. */
  restored?: PendingConfirmation;
}

/**
 * The permission policy in front of every tool call. DENY: the call gets an error result naming
 * the rule. ALLOW (or ASK with confirmations off): it runs. ASK: a confirmation is opened and the
 * turn waits for a person, the timeout, or the turn's cancellation; a rejection becomes an error
 * result that says so, and the turn goes on.
 */
export function policyGate(deps: PolicyGateDeps): ToolGate {
  return {
    async admit(call, context, emit): Promise<Admission> {
      // Nothing to decide: the executor answers that no such tool is offered.
      if (!deps.isOffered(call.name)) return { run: true, call };
      // Broken JSON matches no argument pattern; the tool itself reports the bad arguments.
      const args = argumentsObjectOrEmpty(call.argumentsJson);
      const { decision, rule } = deps.rules().decide({ name: call.name, args, workspace: deps.workspace });
      // A confirmation from before a restart is asked again as it was, unless the rules changed meanwhile.
      const restored = deps.restored?.callId === call.id && decision === "ask" && deps.settings().enabled ? deps.restored : undefined;
      if (restored) return ask(restored, call, context, emit);
      if (decision === "deny") {
        emit({ type: "permission_denied", callId: call.id, toolName: call.name, rule });
        const why = rule === null ? "the session's default decision is DENY" : `the permission rule "${rule}" denies it`;
        return { run: false, output: `not run: ${why}` };
      }
      const settings = deps.settings();
      if (decision === "allow" || !settings.enabled) return { run: true, call };

      const now = Date.now();
      const confirmation: PendingConfirmation = {
        id: `conf_${randomUUID()}`,
        sessionId: deps.sessionId,
        turnId: context.turnId,
        callId: call.id,
        toolName: call.name,
        argumentsJson: call.argumentsJson,
        rule,
        readOnly: deps.isReadOnly(call.name),
        createdAtMs: now,
        deadlineMs: settings.timeoutMs > 0 ? now + settings.timeoutMs : 0,
      };
      return ask(confirmation, call, context, emit);
    },
  };

  /** Opens the confirmation and waits for its answer; turns the answer into an admission. */
  async function ask(confirmation: PendingConfirmation, call: LlmToolCall, context: TurnContext, emit: (event: TurnEvent) => void): Promise<Admission> {
    const answered = deps.book.open(confirmation);
    emit({ type: "confirmation_required", confirmation });
    const resolution = await waitFor(confirmation, answered, deps.settings(), deps.book, context.signal);
    emit({ type: "confirmation_resolved", confirmationId: confirmation.id, callId: call.id, resolution });
    if (resolution.outcome === "cancelled") throw abortError(context.signal);
    if (!resolution.runs) {
      const reason = resolution.reason ? `: ${resolution.reason}` : "";
      const who = resolution.outcome === "timed_out" ? "nobody confirmed it in time" : "the user rejected it";
      return { run: false, output: `not run: ${who}${reason}` };
    }
    return { run: true, call: resolution.editedArgumentsJson ? { ...call, argumentsJson: resolution.editedArgumentsJson } : call };
  }
}

/**
 * Resolves the confirmation by the person, the deadline or the turn's cancellation, whichever
 * comes first. A shutdown leaves it pending and suspends the turn, to be asked again after the
 * restart; a deadline that passed meanwhile applies its action at once.
 */
async function waitFor(
  confirmation: PendingConfirmation,
  answered: Promise<Resolution>,
  settings: ConfirmationSettings,
  book: ConfirmationBook,
  signal: AbortSignal,
): Promise<Resolution> {
  const settle = (outcome: Resolution["outcome"], runs: boolean, resolvedBy: string, reason: string) =>
    book.resolve(confirmation.id, { outcome, runs, resolvedBy, reason, resolvedAtMs: Date.now() });
  let suspend: () => void = () => {};
  const suspended = new Promise<never>((_, reject) => (suspend = () => reject(new TurnSuspended())));
  const onAbort = () => {
    if (cancelReasonOf(signal) !== "shutdown") return settle("cancelled", false, "cancel", "the turn was cancelled");
    // Kept for the restart; an answer given meanwhile is refused (UNAVAILABLE), not silently lost.
    book.suspend(confirmation.id);
    suspend();
  };
  let timer: NodeJS.Timeout | undefined;
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  if (confirmation.deadlineMs > 0) {
    const approve = settings.timeoutAction === "approve";
    const timeoutMs = confirmation.deadlineMs - confirmation.createdAtMs;
    timer = setTimeout(
      () => settle("timed_out", approve, "timeout", `no answer within ${timeoutMs} ms`),
      Math.max(0, confirmation.deadlineMs - Date.now()),
    );
  }
  try {
    return await Promise.race([answered, suspended]);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

