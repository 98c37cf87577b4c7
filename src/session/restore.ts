import { randomUUID } from "node:crypto";
import type { Logger } from "../logging.js";
import type { SessionRecord } from "../store/record.js";
import type { SessionStore } from "../store/types.js";
import type { SessionRegistry } from "./registry.js";
import type { Session } from "./session.js";

/**
 * Loads every stored session into the registry. Damaged files are logged and skipped, never
 * rewritten; interrupted turns are repaired; children whose parent is gone become top-level.
 */
export async function restoreSessions(
  store: SessionStore,
  registry: SessionRegistry,
  open: (record: SessionRecord) => Session,
  logger: Logger,
): Promise<{ restored: number; failed: number }> {
  const { records, failures } = await store.loadAll();
  for (const failure of failures) {
    logger.error(failure, "skipping a stored session that cannot be read; the file is left untouched");
  }
  for (const stored of records) {
    const { record, repaired, inDoubt } = repairInterruptedTurn(stored);
    const session = open(record);
    registry.add(session);
    if (inDoubt) {
      logger.warn({ sessionId: session.id, callId: inDoubt.callId, tool: inDoubt.toolName }, "a tool call was running when the server stopped; it is in doubt and was not run again");
      session.reportInDoubt(inDoubt);
    }
    if (repaired) session.markChanged();
  }
  // A parent may be missing: its file unreadable, or a crash between two writes.
  for (const session of [...registry.all()]) {
    if (session.parentId !== null && !registry.find(session.parentId)) {
      logger.warn({ sessionId: session.id, parentId: session.parentId }, "parent not found; session restored as top-level");
      registry.detachFromParent(session);
    }
  }
  logger.info({ restored: records.length, failed: failures.length }, "sessions restored");
  return { restored: records.length, failed: failures.length };
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
} {
  const answered = new Set(record.messages.flatMap((m) => (m.toolResult ? [m.toolResult.callId] : [])));
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
  return { record: { ...record, state, messages: repairedMessages, callInFlight: null }, repaired: repaired || flight !== null, inDoubt };
}
