import { randomUUID } from "node:crypto";
import { AgentdClient, events } from "../../src/client/client.js";
import { scripted } from "./harness.js";

/** What the clients were told: what the server must still have after a crash. */
export interface Acknowledged {
  /** Sessions whose CreateSession reply arrived. */
  sessions: Set<string>;
  /** Turns whose turn_completed arrived, with their prompt. */
  turns: Array<{ sessionId: string; turnId: string; prompt: string }>;
  /** The highest sequence number each session's clients saw. */
  maxSequence: Map<string, number>;
  /** Tokens those turns reported used: their owner's spending. */
  tokens: number;
}

export function acknowledged(): Acknowledged {
  return { sessions: new Set(), turns: [], maxSequence: new Map(), tokens: 0 };
}

/** Two model calls per turn, with a tool call between: several messages and writes per turn. */
export const CRASH_MODEL = scripted(
  [
    { text: "Let me look around first.", chunkSize: 7, toolCalls: [{ name: "list_dir", arguments: {} }] },
    { text: "Done with {{last_user_message}}.", chunkSize: 5 },
  ],
  true,
);

/**
 * Runs turns on `sessions` one after the other (one client loop per session) and creates new
 * sessions alongside, until the server goes away; records every acknowledgement received.
 */
export async function runUntilFailure(client: AgentdClient, sessions: string[], ack: Acknowledged, maxCreates = 200): Promise<void> {
  let up = true;
  let creates = 0;
  const turnLoop = async (sessionId: string): Promise<void> => {
    while (up) {
      const prompt = `prompt ${randomUUID()}`;
      try {
        for await (const event of events(client.streamGenerate({ sessionId, prompt }))) {
          if (event.sequence > (ack.maxSequence.get(sessionId) ?? 0)) ack.maxSequence.set(sessionId, event.sequence);
          if (event.payload?.$case === "turnCompleted") {
            ack.turns.push({ sessionId, turnId: event.turnId, prompt });
            ack.tokens += event.payload.turnCompleted.result?.usage?.totalTokens ?? 0;
          }
        }
      } catch {
        up = false;
      }
    }
  };
  const createLoop = async (): Promise<void> => {
    // Bounded, so that long runs stay within the per-owner session limit.
    while (up && creates++ < maxCreates) {
      try {
        const { session } = await client.createSession({ config: { model: CRASH_MODEL }, labels: { kind: "created-under-load" } });
        ack.sessions.add(session!.id);
      } catch {
        up = false;
      }
    }
  };
  await Promise.all([...sessions.map(turnLoop), createLoop(), createLoop()]);
}
