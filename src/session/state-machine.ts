import { failedPrecondition } from "../errors.js";
import type { SessionStateName } from "./types.js";

export type SessionAction = "start_turn" | "end_turn" | "pause" | "resume" | "close";

/**
 * The one place that decides which lifecycle moves are legal. `resume` lands on running or idle
 * depending on whether a turn is still in flight; everything else has a fixed target.
 */
const TRANSITIONS: Record<SessionStateName, Partial<Record<SessionAction, SessionStateName | "resume">>> = {
  idle: { start_turn: "running", pause: "paused", close: "closed" },
  running: { end_turn: "idle", pause: "paused", close: "closed" },
  // A turn that ends while paused leaves the session paused: nobody asked to resume it.
  paused: { resume: "resume", end_turn: "paused", close: "closed" },
  closed: {},
};

export function nextState(
  sessionId: string,
  from: SessionStateName,
  action: SessionAction,
  turnActive: boolean,
): SessionStateName {
  const target = TRANSITIONS[from][action];
  if (target === "resume") return turnActive ? "running" : "idle";
  if (target !== undefined) return target;
  throw failedPrecondition(refusal(sessionId, from, action));
}

function refusal(sessionId: string, from: SessionStateName, action: SessionAction): string {
  const subject = `session ${sessionId}`;
  if (from === "closed") return `${subject} is closed`;
  switch (action) {
    case "start_turn":
      return from === "paused"
        ? `${subject} is paused; call Resume before starting a new turn`
        : `${subject} is already running a turn; wait for it to finish or call Cancel`;
    case "pause":
      return `${subject} is already paused`;
    case "resume":
      return `${subject} is not paused (it is ${from})`;
    default:
      return `${subject} cannot ${action.replace("_", " ")} while ${from}`;
  }
}
