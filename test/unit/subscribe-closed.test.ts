import { describe, expect, it } from "vitest";
import { subscribeToSession, type SubscriptionItem } from "../../src/events/subscribe.js";
import { DEFAULT_CONFIRMATION, DEFAULT_PERMISSIONS } from "../../src/policy/types.js";
import { newSessionRecord } from "../../src/session/new-session.js";
import { Session } from "../../src/session/session.js";

describe("a subscription to a session that has closed", () => {
  it("ends at once, without an error", async () => {
    const config = { model: null, systemPrompt: "", limits: { maxToolRounds: 1, toolTimeoutMs: 0 }, permissions: DEFAULT_PERMISSIONS, confirmation: DEFAULT_CONFIRMATION, tools: null };
    const session = new Session(newSessionRecord({ id: "s1", owner: "o", parentId: null, config, workspace: "/w", ephemeral: true, labels: {} }), () => {});
    await session.close();
    const sources = { readStored: async () => ({ events: [], oldest: 0 }), flush: async () => true, descendants: () => [], added: () => () => {}, isDescendant: () => false };
    const items: SubscriptionItem[] = [];
    const errors: unknown[] = [];
    let completed = false;
    subscribeToSession(session, { afterSequence: 0, includeDescendants: false }, sources).subscribe({
      next: (item) => items.push(item),
      error: (error) => errors.push(error),
      complete: () => (completed = true),
    });
    // An error thrown inside the subscription would surface from a timer (rxjs), failing the run.
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(errors).toEqual([]);
    expect(completed).toBe(true);
  });
});
