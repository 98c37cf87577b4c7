import { randomUUID } from "node:crypto";
import type { SessionRecord } from "./types.js";

/**
 * Makes a record from the store safe to continue: a turn that was running when the server stopped
 * did not survive, so the session comes back idle (or paused), and tool calls that never got a result
 * are answered, because model providers reject a history with unanswered tool calls.
 */
export function repairInterruptedTurn(record: SessionRecord): { record: SessionRecord; repaired: boolean } {
  const answered = new Set(record.messages.flatMap((m) => (m.toolResult ? [m.toolResult.callId] : [])));
  const repairedMessages = [...record.messages];
  let repaired = record.state === "running";
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
          output: "interrupted: the server stopped before this tool call finished",
          isError: true,
        },
        createdAt: new Date().toISOString(),
        turnId: message.turnId,
      });
    }
  }
  const state = record.state === "paused" ? "paused" : "idle";
  return { record: { ...record, state, messages: repairedMessages }, repaired };
}
