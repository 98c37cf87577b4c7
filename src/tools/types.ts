import type { TurnContext } from "../agent/turn-context.js";
import type { UsageTotals } from "../session/types.js";

/** Tools the agent loop can run on behalf of the model. */

export interface ToolContext extends TurnContext {
  /** Absolute path of the session's workspace; file tools must stay inside it. */
  readonly workspace: string;
  /** The call's own signal: aborted when the turn stops or the tool times out; long work must stop promptly. */
  readonly signal: AbortSignal;
}

export interface ToolOutput {
  output: string;
  isError: boolean;
  /**
   * Model tokens the tool itself spent (a subagent's turn), added to the calling turn's usage. They
   * are taken as paid for already (the subagent's session told its owner's ledger), not charged again.
   */
  usage?: UsageTotals;
}

/** What a tool may return instead of a plain string: an error the tool reports itself, or usage. */
export interface ToolReturn {
  output: string;
  isError?: boolean;
  usage?: UsageTotals;
}

/** Where a tool comes from, for ListTools and the logs. */
export type ToolSource = { kind: "builtin" } | { kind: "mcp"; server: string; tool: string };

export interface Tool {
  name: string;
  description: string;
  /** JSON schema (draft 2020-12 subset understood by Ajv) of the arguments object. */
  inputSchema: Record<string, unknown>;
  /**
   * True when the tool only looks (reads files, lists, searches) and changes nothing, in the
   * workspace or anywhere else; false when it can write files or run commands. A permission gate
   * can let read-only calls through and ask before the others, so say false when in doubt.
   */
  readOnly: boolean;
  /** Default: built in. */
  source?: ToolSource;
  /**
   * Overrides the session's per-call time limit; 0 for none. For a tool bounded otherwise (a
   * subagent's turn has its own limits and follows its caller's cancellation).
   */
  timeoutMs?: number;
  /**
   * Runs the tool with arguments already validated against inputSchema. Throwing is allowed: the
   * executor turns the error into an is_error result the model can read.
   */
  execute(args: Record<string, unknown>, context: ToolContext): Promise<string | ToolReturn>;
}
