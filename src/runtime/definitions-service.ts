import { realpath } from "node:fs/promises";
import path from "node:path";
import { GlobalDefinitions } from "../definitions/global-definitions.js";
import { visibleDefinitions, type DefinitionScope } from "../definitions/visible.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import { AgentdError, invalidArgument, notFound } from "../errors.js";
import type { Logger } from "../logging.js";
import type { Session } from "../session/session.js";
import type { StoredDefinition } from "../store/record.js";
import { isWithin } from "../util/paths.js";
import { checkText, INPUT_LIMITS } from "./input-limits.js";

export type Scope = DefinitionScope;

/** A definition as one session sees it, and who holds it. */
export interface Visible<T> {
  item: T;
  scope: Scope;
  /** The session that loaded it; "" for a global one. */
  sessionId: string;
}

/** Where a skill or definition a client loads comes from: a path on the server, or its text. */
export type DefinitionSource = { path: string } | { content: string };

export type Parsed<T> = { item: T; stored: StoredDefinition } | { problem: DefinitionProblem };

/** What differs between skills and subagent definitions. */
export interface DefinitionKind<T extends { name: string }> {
  /** "skill" or "subagent definition", for messages. */
  noun: string;
  /** The session's list that holds them. */
  list: "skills" | "agents";
  /** The config key that names the allowed roots, for messages. */
  rootsSetting: string;
  loadDir(root: string): Promise<{ items: T[]; problems: DefinitionProblem[] }>;
  /** Reads one from a checked, resolved path on the server. */
  loadPath(realPath: string): Promise<Parsed<T>>;
  /** Parses text a client sent, or a session stored. */
  parse(stored: StoredDefinition, file: string): Parsed<T>;
  /** What else is wrong with one a client loads into a session, given the skills it sees; null when nothing. */
  check?(item: T, seesSkill: (name: string) => boolean): string | null;
}

/**
 * One registry of definitions: the server's global folder, reloaded on demand, and what each
 * session loaded, which its descendants inherit. A nearer session's definition shadows a farther
 * one's and any global one of the same name.
 */
export class DefinitionsService<T extends { name: string }> {
  private readonly global: GlobalDefinitions<T>;
  /** Parsed forms of the stored texts, so a session's definitions are parsed once. */
  private readonly parsed = new WeakMap<StoredDefinition, T | null>();

  constructor(
    private readonly kind: DefinitionKind<T>,
    private readonly options: {
      dir: string;
      /** Resolved folders a session may load from, besides its workspace. */
      allowedRoots: string[];
      lineage: (session: Session) => Session[];
      logger: Logger;
      /** For definitions that name skills. */
      isVisibleSkill?: (session: Session, name: string) => boolean;
    },
  ) {
    this.global = new GlobalDefinitions(() => kind.loadDir(options.dir));
  }

  get dir(): string {
    return this.options.dir;
  }

  /** Loads the global folder again; a bad file is reported and left out, the rest load. */
  async reload(): Promise<{ items: readonly T[]; problems: readonly DefinitionProblem[] }> {
    const { problems } = await this.global.reload();
    for (const problem of problems) this.options.logger.warn({ file: problem.file, line: problem.line }, `${this.kind.noun} not loaded: ${problem.message}`);
    return { items: this.global.list(), problems };
  }

  globalList(): readonly T[] {
    return this.global.list();
  }

  problems(): readonly DefinitionProblem[] {
    return this.global.problems();
  }

  /** What a session sees, sorted by name: its own, then its ancestors', then the global ones. */
  visible(session: Session): Visible<T>[] {
    // Each item travels with the session that holds it, through the shadowing.
    const layers = this.options.lineage(session).map((holder) =>
      holder.extensions.list(this.kind.list).flatMap((stored) => {
        const item = this.parsedOf(stored, holder.id);
        return item ? [{ name: item.name, item, sessionId: holder.id }] : [];
      }),
    );
    const global = this.global.list().map((item) => ({ name: item.name, item, sessionId: "" }));
    return visibleDefinitions(global, layers).map(({ item: held, scope }) => ({ item: held.item, scope, sessionId: held.sessionId }));
  }

  /** One definition as a session (or, with null, the server) sees it; NOT_FOUND otherwise. */
  find(session: Session | null, name: string): Visible<T> {
    const found = session
      ? this.visible(session).find((v) => v.item.name === name)
      : this.global.get(name) && { item: this.global.get(name)!, scope: "global" as const, sessionId: "" };
    if (!found) throw notFound(`no ${this.kind.noun} named "${name}"${session ? ` in session ${session.id}` : " on the server"}`);
    return found;
  }

  /**
   * Adds a definition to a session, from a path on the server (inside the session's workspace or an
   * allowed root, after resolving symlinks) or from text. INVALID_ARGUMENT with the file and line
   * for a malformed one; ALREADY_EXISTS when the session has one of that name.
   */
  async load(session: Session, source: DefinitionSource): Promise<Visible<T>> {
    const count = session.extensions.list(this.kind.list).length;
    if (count >= INPUT_LIMITS.definitionsPerSession) {
      throw new AgentdError("resource_exhausted", `session ${session.id} has ${count} of its own ${this.kind.noun}s, the limit; unload one first`);
    }
    let parsed: Parsed<T>;
    if ("path" in source) {
      parsed = await this.kind.loadPath(await this.checkPath(session, source.path));
    } else {
      checkText(this.kind.noun, source.content, INPUT_LIMITS.definitionBytes);
      parsed = this.kind.parse({ name: "", text: source.content, dir: null }, "(content)");
    }
    if ("problem" in parsed) {
      const { file, line, message } = parsed.problem;
      throw invalidArgument(`${this.kind.noun} not loaded: ${file}:${line}: ${message}`);
    }
    const why = this.kind.check?.(parsed.item, (name) => this.options.isVisibleSkill?.(session, name) ?? true);
    if (why) throw invalidArgument(`${this.kind.noun} not loaded: ${why}`);
    if (!session.extensions.add(this.kind.list, parsed.stored)) {
      throw new AgentdError("already_exists", `session ${session.id} already has a ${this.kind.noun} named "${parsed.item.name}"; unload it first`);
    }
    this.parsed.set(session.extensions.get(this.kind.list, parsed.item.name)!, parsed.item);
    return { item: parsed.item, scope: "session", sessionId: session.id };
  }

  unload(session: Session, name: string): void {
    if (!session.extensions.remove(this.kind.list, name)) {
      throw notFound(`session ${session.id} has no ${this.kind.noun} named "${name}" of its own (inherited and global ones cannot be unloaded here)`);
    }
  }

  private parsedOf(stored: StoredDefinition, sessionId: string): T | null {
    if (this.parsed.has(stored)) return this.parsed.get(stored)!;
    const parsed = this.kind.parse(stored, stored.dir ?? "(content)");
    const item = "item" in parsed ? parsed.item : null;
    // Stored text was valid when loaded; a rule change since may have made it invalid.
    if (!item) this.options.logger.warn({ sessionId, name: stored.name }, `a stored ${this.kind.noun} no longer loads and is left out`);
    this.parsed.set(stored, item);
    return item;
  }

  private async checkPath(session: Session, requested: string): Promise<string> {
    if (requested === "" || requested.length > INPUT_LIMITS.workspaceChars || requested.includes("\u0000")) {
      throw invalidArgument(`path must be at most ${INPUT_LIMITS.workspaceChars} characters, without NUL`);
    }
    const absolute = path.resolve(session.workspace, requested);
    const real = await realpath(absolute).catch(() => null);
    const roots = [await realpath(session.workspace).catch(() => session.workspace), ...this.options.allowedRoots];
    if (real === null || !roots.some((root) => isWithin(real, root))) {
      // The same answer for a missing path and a forbidden one: the server's files are not probed through here.
      throw new AgentdError(
        "permission_denied",
        `${requested} is not an existing path inside the session's workspace (relative paths start there) or the server's ${this.kind.noun} folders (${this.kind.rootsSetting}); send the text itself as content instead`,
      );
    }
    return real;
  }
}
