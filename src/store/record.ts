import type { ContextRecord } from "../context/types.js";
import type { McpTransportSpec } from "../mcp/types.js";
import type { PendingConfirmation } from "../policy/confirmations.js";
import type { Message, SessionConfig, SessionStateName, UsageTotals } from "../session/types.js";

/**
 * The durable form of a session, version 1: what the stores write and what old data directories
 * hold (test/fixtures/session-records/v1 keeps real files). Fields may be added as optional; a
 * change that old files cannot satisfy needs a new version and a migration.
 */
export interface SessionRecord {
  version: 1;
  id: string;
  owner: string;
  parentId: string | null;
  /** A session that was running when written is restored idle: its turn did not survive. */
  state: SessionStateName;
  /** Records from before permission policies lack `permissions` and `confirmation`: the built-in ones apply. */
  config: StoredSessionConfig;
  workspace: string;
  ephemeral: boolean;
  labels: Record<string, string>;
  createdAt: string;
  updatedAt: string;
  usage: UsageTotals;
  /**
   * What the session's own model calls cost (not a subagent's, rolled up into `usage` too): what its
   * owner's spend ledger must have of it. A restart adds what the ledger's mark of it lacks. Absent:
   * nothing (or a record from before the ledger).
   */
  spent?: UsageTotals;
  lastSequence: number;
  /**
   * Sequence numbers up to this one may have reached a client (they are reserved ahead of use);
   * after a crash the session numbers on from here. Absent in older records: lastSequence.
   */
  sequenceReservedThrough?: number;
  /**
   * Numbers a restore skipped (reserved before a crash, never used), so a replay passes over them
   * after later restarts too. Absent: none.
   */
  skippedSequences?: SkippedSequences[];
  messages: MessageRecord[];
  /** Model calls this session's scripted model has answered (its position in the script); absent means 0. */
  scriptSteps?: number;
  /**
   * A tool call that changes things and had started when this was written. Written (durably)
   * before the call starts and cleared with its result: found on restore, the call is "in doubt".
   */
  callInFlight?: { callId: string; toolName: string; turnId: string } | null;
  /**
   * The turn that was running when this was written. Found on restore, it did not survive (unless
   * it waits for a person): its followers are told it was cancelled ("server_restarted").
   */
  runningTurnId?: string | null;
  /** The confirmation the session's turn waits on; on restore, the turn resumes waiting on it. */
  pendingConfirmation?: PendingConfirmation | null;
  /** What was added to this session (and its descendants): skills, subagent definitions, MCP servers. */
  extensions?: SessionExtensionsRecord;
  /** The subagent definition this session runs, when the task tool created it. */
  agent?: string;
  /**
   * What the model's context holds of the transcript (compactions, clears, rewinds, the last call's
   * size); absent: the whole transcript. Messages are never changed for it.
   */
  context?: ContextRecord;
}

/** A skill or subagent definition as a session keeps it: its file's text, re-parsed on restore. */
export interface StoredDefinition {
  name: string;
  text: string;
  /** A skill's folder, for the files it refers to; null for one given as text. */
  dir: string | null;
}

/** An MCP server a client added to a session. Its env and headers are kept (the file is private to the server). */
export interface StoredMcpServer {
  name: string;
  spec: McpTransportSpec;
}

export interface SessionExtensionsRecord {
  skills: StoredDefinition[];
  agents: StoredDefinition[];
  mcpServers: StoredMcpServer[];
}

export type StoredSessionConfig = Omit<SessionConfig, "permissions" | "confirmation" | "tools"> &
  Partial<Pick<SessionConfig, "permissions" | "confirmation" | "tools">>;

/** A stored message has the shape of the domain's Message; the alias marks where the two may part. */
export type MessageRecord = Message;

/** Sequence numbers after `after` up to `through` were never used. */
export interface SkippedSequences {
  after: number;
  through: number;
}
