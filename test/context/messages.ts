import type { Message } from "../../src/session/types.js";

/** Messages for the context tests: user and assistant text, tool calls and their results. */
let n = 0;
const base = (turnId: string) => ({ id: `m${++n}`, createdAt: "2026-01-01T00:00:00.000Z", turnId, toolCalls: [] });

export const user = (text: string, turnId = text): Message => ({ ...base(turnId), role: "user", text });
export const assistant = (text: string, turnId: string, calls: string[] = []): Message => ({
  ...base(turnId),
  role: "assistant",
  text,
  toolCalls: calls.map((id) => ({ id, name: "read_file", argumentsJson: '{"path":"a.txt"}' })),
});
export const result = (callId: string, turnId: string, output = "contents"): Message => ({
  ...base(turnId),
  role: "tool",
  text: "",
  toolResult: { callId, name: "read_file", output, isError: false },
});
export const summary = (text: string, turnId = ""): Message => ({ ...base(turnId), role: "user", text, kind: "summary" });

/** A whole turn: the prompt and a plain answer. */
export const exchange = (turnId: string): Message[] => [user(`${turnId} prompt`, turnId), assistant(`${turnId} answer`, turnId)];
