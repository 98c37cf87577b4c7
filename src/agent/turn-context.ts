import type { Logger } from "../logging.js";

/**
 * What every piece of work done for one turn receives: model providers, tools, and later policy
 * checks and MCP calls. One signal stands for every way a turn can stop early.
 */
export interface TurnContext {
  readonly sessionId: string;
  readonly turnId: string;
  /**
   * Aborted when the turn is cancelled (Cancel, the client going away, the session destroyed), when
   * its deadline passes, or when the server shuts down; the reason is a TurnAbortedError naming which.
   */
  readonly signal: AbortSignal;
  /** A child logger that tags every line with the session and turn. */
  readonly logger: Logger;
}
