import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import type { Caller } from "../../runtime/caller.js";
import { hasLoneSurrogate } from "../../util/text.js";

/**
 * The tokens file: bearer tokens stored as SHA-256 hashes, each naming the principal it stands for.
 *
 *   { "tokens": [ { "sha256": "<64 hex>", "owner": "alice", "role": "user", "name": "laptop" } ] }
 *
 * `agentd token create` makes a token and prints its entry. The file never holds a usable secret:
 * tokens are 32 random bytes, so their hashes cannot be reversed or guessed.
 */
export interface TokenEntry {
  /** Lowercase hex SHA-256 of the token. */
  sha256: string;
  owner: string;
  role: "user" | "admin";
  /** A label for people (which device or service holds the token); "" when the entry has none. */
  name: string;
}

/** Same rule as an owner sent by a client: 1 to 128 characters, no control characters. */
export const MAX_OWNER_CHARS = 128;
const MAX_NAME_CHARS = 128;
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const SHA256_HEX = /^[0-9a-fA-F]{64}$/;
const ENTRY_KEYS = new Set(["sha256", "owner", "role", "name"]);

/** The prefix of tokens made by newToken; it lets secret scanners and people recognise one. */
export const TOKEN_PREFIX = "agd_";

/** A new bearer token: "agd_" and 32 random bytes in base64url (43 characters). */
export function newToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString("base64url");
}

/** The hex SHA-256 of a token, as stored in the tokens file. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token, "utf8").digest("hex");
}

/** Why an owner id is unusable, or null when it is fine (shared by the tokens file, JWT and mTLS). */
export function ownerProblem(owner: unknown): string | null {
  if (typeof owner !== "string") return "must be a string";
  if (owner === "") return "must not be empty";
  if (owner.length > MAX_OWNER_CHARS) return `must be at most ${MAX_OWNER_CHARS} characters`;
  if (CONTROL.test(owner)) return "must not contain control characters";
  if (hasLoneSurrogate(owner)) return "must be well-formed text (half of a surrogate pair alone)";
  // Sessions made without authentication (before it was turned on) belong to "default".
  if (owner === "default") return 'must not be "default", the owner of sessions made without authentication';
  return null;
}

/**
 * Checks one entry of a tokens file. Messages name the entry (its position, and its "name" when that
 * is a plain label) and the field, never the values: the file is the operator's, but error messages
 * end up in logs and terminals.
 */
export function parseTokenEntry(raw: unknown, index: number): TokenEntry {
  const where = describeEntry(raw, index);
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error(`${where} must be an object`);
  const entry = raw as Record<string, unknown>;
  for (const key of Object.keys(entry)) {
    if (!ENTRY_KEYS.has(key)) throw new Error(`${where} has an unknown field (allowed: sha256, owner, role, name)`);
  }
  if (typeof entry.sha256 !== "string" || !SHA256_HEX.test(entry.sha256)) {
    throw new Error(`${where}: "sha256" must be 64 hex characters (the SHA-256 of the token, as printed by "agentd token create")`);
  }
  const problem = ownerProblem(entry.owner);
  if (problem) throw new Error(`${where}: "owner" ${problem}`);
  if (entry.role !== "user" && entry.role !== "admin") throw new Error(`${where}: "role" must be "user" or "admin"`);
  if (entry.name !== undefined && (typeof entry.name !== "string" || entry.name.length > MAX_NAME_CHARS || CONTROL.test(entry.name))) {
    throw new Error(`${where}: "name" must be a string of at most ${MAX_NAME_CHARS} characters without control characters`);
  }
  return {
    sha256: entry.sha256.toLowerCase(),
    owner: entry.owner as string,
    role: entry.role,
    name: (entry.name as string | undefined) ?? "",
  };
}

function describeEntry(raw: unknown, index: number): string {
  const name = raw !== null && typeof raw === "object" ? (raw as Record<string, unknown>).name : undefined;
  const label = typeof name === "string" && /^[\w .@:-]{1,64}$/.test(name) ? ` ("${name}")` : "";
  return `entry ${index}${label}`;
}

/** A tokens file's text, checked; `source` (the file name) prefixes every error. */
export function parseTokensFile(text: string, source: string): TokenEntry[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (error) {
    // V8's message quotes the text around the error; only the position is kept.
    const position = /position (\d+)/.exec(String((error as Error).message))?.[1];
    throw new Error(`tokens file ${source} is not valid JSON${position ? ` (at character ${position})` : ""}`);
  }
  if (doc === null || typeof doc !== "object" || Array.isArray(doc) || !Array.isArray((doc as { tokens?: unknown }).tokens)) {
    throw new Error(`tokens file ${source} must be a JSON object with a "tokens" array`);
  }
  const entries: TokenEntry[] = [];
  const seen = new Map<string, number>();
  (doc as { tokens: unknown[] }).tokens.forEach((raw, index) => {
    let entry: TokenEntry;
    try {
      entry = parseTokenEntry(raw, index);
    } catch (error) {
      throw new Error(`tokens file ${source}: ${(error as Error).message}`);
    }
    const first = seen.get(entry.sha256);
    if (first !== undefined) {
      throw new Error(`tokens file ${source}: ${describeEntry(raw, index)} has the same sha256 as entry ${first}; each token must appear once`);
    }
    seen.set(entry.sha256, index);
    entries.push(entry);
  });
  return entries;
}

/** The tokens of a tokens file, looked up by the token a caller presents. */
export class TokenStore {
  private readonly byHash: Map<string, { entry: TokenEntry; digest: Buffer }>;

  constructor(entries: readonly TokenEntry[]) {
    this.byHash = new Map(entries.map((entry) => [entry.sha256, { entry, digest: Buffer.from(entry.sha256, "hex") }]));
  }

  /** Reads and checks a tokens file; any problem is an Error naming the file (and the entry). */
  static async load(file: string): Promise<TokenStore> {
    const source = path.resolve(file);
    let text: string;
    try {
      text = await readFile(source, "utf8");
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? "unknown error";
      throw new Error(`cannot read tokens file ${source} (${code})`);
    }
    return new TokenStore(parseTokensFile(text, source));
  }

  get size(): number {
    return this.byHash.size;
  }

  /** The entry of a presented token, or undefined when the token is not in the file. */
  lookup(token: string): TokenEntry | undefined {
    const digest = createHash("sha256").update(token, "utf8").digest();
    // Looking the hash up in a Map takes time that depends on how the presented token's hash compares
    // with the stored ones. That is not a timing side channel worth closing: the attacker already
    // knows the hash of what it sent, and learning that a stored hash starts with the same bytes does
    // not help it find a token with that hash (a SHA-256 preimage of 256 random bits). The constant-time
    // comparison below keeps the final check free of early exits all the same.
    const found = this.byHash.get(digest.toString("hex"));
    if (!found || !timingSafeEqual(found.digest, digest)) return undefined;
    return found.entry;
  }

  /** The caller a presented token stands for, or undefined. */
  callerFor(token: string): Caller | undefined {
    const entry = this.lookup(token);
    return entry ? { owner: entry.owner, role: entry.role, via: "token" } : undefined;
  }
}
