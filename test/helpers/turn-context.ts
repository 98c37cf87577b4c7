import type { TurnContext } from "../../src/agent/turn-context.js";
import { createLogger } from "../../src/logging.js";

const silent = createLogger("silent");

/** A turn context for calling a model client or a tool directly, outside a session. */
export function turnContext(signal: AbortSignal = new AbortController().signal): TurnContext {
  return { sessionId: "test-session", turnId: "test-turn", signal, logger: silent };
}
