import { describe, expect, it } from "vitest";
import { AgentdError } from "../../src/errors.js";
import { PauseGate } from "../../src/session/pause-gate.js";
import { nextState } from "../../src/session/state-machine.js";

describe("session state machine", () => {
  it("allows the lifecycle moves", () => {
    expect(nextState("s", "idle", "start_turn", false)).toBe("running");
    expect(nextState("s", "running", "end_turn", true)).toBe("idle");
    expect(nextState("s", "running", "pause", true)).toBe("paused");
    expect(nextState("s", "paused", "resume", true)).toBe("running");
    expect(nextState("s", "paused", "resume", false)).toBe("idle");
    expect(nextState("s", "paused", "end_turn", true)).toBe("paused");
    expect(nextState("s", "idle", "close", false)).toBe("closed");
  });

  it("refuses the others with FAILED_PRECONDITION and a message that says what to do", () => {
    const refusal = (from: Parameters<typeof nextState>[1], action: Parameters<typeof nextState>[2]) => {
      try {
        nextState("s1", from, action, false);
      } catch (error) {
        expect(error).toBeInstanceOf(AgentdError);
        expect((error as AgentdError).kind).toBe("failed_precondition");
        return (error as AgentdError).message;
      }
      throw new Error(`${action} from ${from} was allowed`);
    };
    expect(refusal("running", "start_turn")).toBe("session s1 is already running a turn; wait for it to finish or call Cancel");
    expect(refusal("paused", "start_turn")).toBe("session s1 is paused; call Resume before starting a new turn");
    expect(refusal("paused", "pause")).toBe("session s1 is already paused");
    expect(refusal("idle", "resume")).toBe("session s1 is not paused (it is idle)");
    expect(refusal("closed", "start_turn")).toBe("session s1 is closed");
  });
});

describe("PauseGate", () => {
  it("passes when open, holds while paused and releases on resume", async () => {
    const gate = new PauseGate();
    const signal = new AbortController().signal;
    await gate.wait(signal);
    gate.pause();
    let passed = false;
    const waiting = gate.wait(signal).then(() => (passed = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(passed).toBe(false);
    gate.resume();
    await waiting;
    expect(passed).toBe(true);
  });

  it("rejects a waiter when its turn is aborted", async () => {
    const gate = new PauseGate();
    gate.pause();
    const controller = new AbortController();
    const waiting = gate.wait(controller.signal);
    controller.abort(new Error("cancelled"));
    await expect(waiting).rejects.toThrow("cancelled");
  });
});
