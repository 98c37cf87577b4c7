import type { SessionExtensionsRecord, StoredDefinition, StoredMcpServer } from "../store/record.js";

type Kind = keyof SessionExtensionsRecord;
type EntryOf<K extends Kind> = SessionExtensionsRecord[K][number];

/** Told of every change: a function, or an owner whose markChanged() is called (no closure to keep). */
export type ChangeListener = (() => void) | { markChanged(): void };

/** Tells a listener that something changed, whichever form it takes. */
export function notify(listener: ChangeListener): void {
  if (typeof listener === "function") listener();
  else listener.markChanged();
}

const NONE: readonly never[] = Object.freeze([]);

/**
 * What a client added to one session: skills, subagent definitions and MCP servers, each list
 * keyed by name. The session stores them with its record; what they mean is the runtime's business.
 */
export class SessionExtensions {
  /** Each list is made when its first entry comes. */
  private skills: SessionExtensionsRecord["skills"] | null;
  private agents: SessionExtensionsRecord["agents"] | null;
  private mcpServers: SessionExtensionsRecord["mcpServers"] | null;

  constructor(
    record: SessionExtensionsRecord | undefined,
    private readonly onChange: ChangeListener,
  ) {
    this.skills = record?.skills?.length ? [...record.skills] : null;
    this.agents = record?.agents?.length ? [...record.agents] : null;
    this.mcpServers = record?.mcpServers?.length ? [...record.mcpServers] : null;
  }

  list<K extends Kind>(kind: K): ReadonlyArray<EntryOf<K>> {
    return (this[kind] ?? NONE) as ReadonlyArray<EntryOf<K>>;
  }

  get<K extends Kind>(kind: K, name: string): EntryOf<K> | undefined {
    return this.list(kind).find((entry) => entry.name === name);
  }

  /** False when the session already has an entry of that name. */
  add<K extends Kind>(kind: K, entry: EntryOf<K>): boolean {
    if (this.get(kind, entry.name)) return false;
    const list = (this[kind as Kind] ??= []) as Array<EntryOf<K>>;
    list.push(entry);
    this.changed();
    return true;
  }

  /** False when there was none of that name. */
  remove(kind: Kind, name: string): boolean {
    const list = this[kind] as Array<StoredDefinition | StoredMcpServer> | null;
    const index = list ? list.findIndex((entry) => entry.name === name) : -1;
    if (index < 0) return false;
    list!.splice(index, 1);
    this.changed();
    return true;
  }

  toRecord(): SessionExtensionsRecord {
    return structuredClone({ skills: this.skills ?? [], agents: this.agents ?? [], mcpServers: this.mcpServers ?? [] });
  }

  private changed(): void {
    notify(this.onChange);
  }
}

const IGNORE: ChangeListener = () => {};

/**
 * A session's extensions read before it has any: every call goes to the session's own, once it has
 * them (the first add makes them), so reading the extensions of thousands of sessions (a restore)
 * makes nothing that stays.
 */
export class DeferredExtensions extends SessionExtensions {
  constructor(
    /** The session's own extensions, made when `make` is true; null while it has none. */
    private readonly own: (make: boolean) => SessionExtensions | null,
  ) {
    super(undefined, IGNORE);
  }

  override list<K extends Kind>(kind: K): ReadonlyArray<EntryOf<K>> {
    return this.own(false)?.list(kind) ?? (NONE as ReadonlyArray<EntryOf<K>>);
  }

  override get<K extends Kind>(kind: K, name: string): EntryOf<K> | undefined {
    return this.own(false)?.get(kind, name);
  }

  override add<K extends Kind>(kind: K, entry: EntryOf<K>): boolean {
    return this.own(true)!.add(kind, entry);
  }

  override remove(kind: Kind, name: string): boolean {
    return this.own(false)?.remove(kind, name) ?? false;
  }

  override toRecord(): SessionExtensionsRecord {
    return this.own(false)?.toRecord() ?? { skills: [], agents: [], mcpServers: [] };
  }
}
