import { randomUUID } from "node:crypto";
import type { Logger } from "../logging.js";
import type { LlmToolCall } from "../llm/types.js";
import type { PendingConfirmation } from "../policy/confirmations.js";
import type { SessionRecord } from "../store/record.js";
import type { LoadResult, SessionStore } from "../store/types.js";
import type { SessionRegistry } from "./registry.js";
import type { Session } from "./session.js";

/**
 * Loads every stored session into the registry. Damaged files are logged and skipped, never
 * rewritten; interrupted turns are repaired; children whose parent is gone become top-level.
 */
/** A turn that was waiting for a person when the server stopped, to be resumed still waiting. */
export interface SuspendedTurn {
  confirmation: PendingConfirmation;
  /** The unanswered calls of its last model answer, in order, the waiting one first. */
  calls: LlmToolCall[];
}

export async function restoreSessions(
  store: SessionStore,
  registry: SessionRegistry,
  open: (record: SessionRecord) => Session,
  logger: Logger,
  resume: (session: Session, turn: SuspendedTurn) => void = () => {},
): Promise<{ restored: number; failed: number }> {
  const loaded = await store.loadAll();
  restoreRecords(loaded, registry, open, logger, resume);
  return { restored: loaded.records.length, failed: loaded.failures.length };
}

/** Adds loaded records to the registry (every stored session, or one tree a cluster node takes over); returns the sessions. */
export function restoreRecords(
  loaded: LoadResult,
  registry: SessionRegistry,
  open: (record: SessionRecord) => Session,
  logger: Logger,
  resume: (session: Session, turn: SuspendedTurn) => void = () => {},
): Session[] {
  const { records, failures, warnings = [] } = loaded;
  for (const failure of failures) {
    logger.error(failure, "skipping a stored session that cannot be read; the file is left untouched");
  }
  for (const warning of warnings) logger.warn(warning, "session store: repaired at start-up");
  // Opened in the store's order (the order the records lie in memory), added in creation order.
  const sessions: Session[] = new Array<Session>(records.length);
  /** The few sessions with something to repair or report. */
  const repairs = new Map<Session, ReturnType<typeof repairInterruptedTurn>>();
  for (let i = 0; i < records.length; i++) {
    const repair = repairInterruptedTurn(records[i]!);
    const session = (sessions[i] = open(repair.record));
    if (repair.repaired || repair.inDoubt || repair.suspended || repair.interruptedTurnId) repairs.set(session, repair);
  }
  const added = registry.addAll(sessions);
  for (const session of added) {
    const repair = repairs.get(session);
    if (!repair) continue;
    const { repaired, inDoubt, suspended, interruptedTurnId } = repair;
    if (suspended) resume(session, suspended);
    if (inDoubt) {
      logger.warn({ sessionId: session.id, callId: inDoubt.callId, tool: inDoubt.toolName }, "a tool call was running when the server stopped; it is in doubt and was not run again");
      session.reportInDoubt(inDoubt);
    }
    // Whoever follows the turn that died with the server learns that it ended, and how.
    if (interruptedTurnId) session.recordTurnEvent(interruptedTurnId, { type: "turn_cancelled", reason: "server_restarted" });
    if (repaired) session.markChanged();
  }
  // A parent may be missing: its file unreadable, or a crash between two writes.
  for (const session of added) {
    if (session.parentId !== null && !registry.find(session.parentId)) {
      logger.warn({ sessionId: session.id, parentId: session.parentId }, "parent not found; session restored as top-level");
      registry.detachFromParent(session);
    }
  }
  logger.info({ restored: records.length, failed: failures.length }, "sessions restored");
  return added;
}

/**
 * Makes a record from the store safe to continue: a turn that was running when the server stopped
 * did not survive, so the session comes back idle (or paused), and tool calls that never got a result
 * are answered, because model providers reject a history with unanswered tool calls.
 */
export function repairInterruptedTurn(record: SessionRecord): {
  record: SessionRecord;
  repaired: boolean;
  inDoubt: { callId: string; toolName: string } | null;
  suspended: SuspendedTurn | null;
  /** The turn that was running and does not go on (one waiting for a person resumes instead). */
  interruptedTurnId: string | null;
} {
  // Most sessions were idle when written: nothing to repair, and nothing is copied for them.
  if ((record.state === "idle" || record.state === "paused") && !record.pendingConfirmation && !record.callInFlight && !record.runningTurnId && !record.messages.some((m) => m.toolCalls.length > 0)) {
    return { record, repaired: false, inDoubt: null, suspended: null, interruptedTurnId: null };
  }
  const answered = new Set(record.messages.flatMap((m) => (m.toolResult ? [m.toolResult.callId] : [])));
  // A turn waiting for a person keeps its unanswered calls: it resumes, still waiting, on restore.
  // (A paused session cannot start a turn: its waiting call is answered as interrupted instead.)
  const waiting = record.state === "paused" ? null : (record.pendingConfirmation ?? null);
  const holder = waiting && !answered.has(waiting.callId) ? record.messages.find((m) => m.toolCalls.some((c) => c.id === waiting.callId)) : undefined;
  const suspended: SuspendedTurn | null =
    waiting && holder ? { confirmation: waiting, calls: holder.toolCalls.filter((c) => !answered.has(c.id)) } : null;
  if (suspended) for (const call of suspended.calls) answered.add(call.id);
  const repairedMessages = [...record.messages];
  let repaired = record.state === "running";
  const flight = record.callInFlight ?? null;
  const inDoubt = flight !== null && !answered.has(flight.callId) ? { callId: flight.callId, toolName: flight.toolName } : null;
  for (const message of record.messages) {
    for (const call of message.toolCalls) {
      if (answered.has(call.id)) continue;
      repaired = true;
      repairedMessages.push({
        id: randomUUID(),
        role: "tool",
        text: "",
        toolCalls: [],
        toolResult: {
          callId: call.id,
          name: call.name,
          output:
            call.id === inDoubt?.callId
              ? "in doubt: the server stopped while this call was running; it may or may not have taken effect, and it was not run again. Check its effect before trying again."
              : "interrupted: the server stopped before this tool call finished",
          isError: true,
        },
        createdAt: new Date().toISOString(),
        turnId: message.turnId,
      });
    }
  }
  const state = record.state === "paused" ? "paused" : "idle";
  // Records from before runningTurnId: a running state names the turn of the last message.
  const running = record.runningTurnId ?? (record.state === "running" ? (record.messages.at(-1)?.turnId ?? null) : null);
  return {
    record: { ...record, state, messages: repairedMessages, callInFlight: null, pendingConfirmation: null, runningTurnId: null },
    repaired: repaired || flight !== null,
    inDoubt,
    suspended,
    interruptedTurnId: suspended ? null : running || null,
  };
}
