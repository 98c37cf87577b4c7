import { isPlainObject } from "../util/values.js";
import type { SessionRecord } from "./record.js";

/** Serialises a record for disk. */
export function encodeRecord(record: SessionRecord): string {
  return JSON.stringify(record);
}

/**
 * Parses and checks a stored record. Throws with a message naming what is wrong, so a damaged file
 * is reported precisely instead of half-restored.
 */
export function decodeRecord(text: string): SessionRecord {
  return checkRecord(JSON.parse(text));
}

/** Checks a parsed record (from a whole-record file, or put together from a snapshot and its logs). */
export function checkRecord(value: unknown): SessionRecord {
  if (!isPlainObject(value)) throw new Error("not a JSON object");
  if (value.version !== 1) throw new Error(`unsupported record version ${JSON.stringify(value.version)}`);
  requireString(value, "id");
  requireString(value, "owner");
  requireString(value, "workspace");
  requireString(value, "createdAt");
  requireString(value, "updatedAt");
  if (value.parentId !== null) requireString(value, "parentId");
  // Numbers go on the wire as 64-bit fields held in JavaScript numbers: past 2^53 - 1 they cannot be sent.
  requireCount(value, "lastSequence");
  if (value.sequenceReservedThrough !== undefined) requireCount(value, "sequenceReservedThrough");
  if (value.scriptSteps !== undefined) requireCount(value, "scriptSteps");
  if (value.skippedSequences !== undefined) {
    const ranges = value.skippedSequences;
    if (!Array.isArray(ranges) || !ranges.every((r) => isPlainObject(r) && Number.isSafeInteger(r.after) && Number.isSafeInteger(r.through) && (r.after as number) <= (r.through as number))) {
      throw new Error("skippedSequences must be a list of {after, through} ranges");
    }
  }
  if (!Array.isArray(value.messages)) throw new Error("messages must be an array");
  if (!isPlainObject(value.config) || !isPlainObject(value.config.limits)) throw new Error("config is missing or malformed");
  if (!isPlainObject(value.usage)) throw new Error("usage is missing");
  requireCount(value.usage, "inputTokens", "usage.");
  requireCount(value.usage, "outputTokens", "usage.");
  const flight = value.callInFlight;
  if (flight !== undefined && flight !== null && !(isPlainObject(flight) && typeof flight.callId === "string" && typeof flight.toolName === "string")) {
    throw new Error("callInFlight must be null or name a call");
  }
  return value as unknown as SessionRecord;
}

function requireString(value: Record<string, unknown>, key: string): void {
  if (typeof value[key] !== "string") throw new Error(`${key} must be a string`);
}

function requireCount(value: Record<string, unknown>, key: string, prefix = ""): void {
  const n = value[key];
  if (!(Number.isSafeInteger(n) && (n as number) >= 0)) throw new Error(`${prefix}${key} must be an integer from 0 to 2^53 - 1`);
}
