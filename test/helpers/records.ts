import type { SessionRecord } from "../../src/store/record.js";

/** A minimal valid session record for store and persister tests. */
export function sessionRecord(id: string, lastSequence = 3): SessionRecord {
  return {
    version: 1,
    id,
    owner: "o",
    parentId: null,
    state: "idle",
    config: { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 } },
    workspace: "/tmp",
    ephemeral: false,
    labels: {},
    createdAt: "2026-01-01T00:00:00.000Z",
    updatedAt: "2026-01-01T00:00:00.000Z",
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence,
    messages: [],
  };
}
