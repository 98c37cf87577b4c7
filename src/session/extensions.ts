import type { SessionExtensionsRecord, StoredDefinition, StoredMcpServer } from "../store/record.js";

type Kind = keyof SessionExtensionsRecord;
type EntryOf<K extends Kind> = SessionExtensionsRecord[K][number];

/**
 * What a client added to one session: skills, subagent definitions and MCP servers, each list
 * keyed by name. The session stores them with its record; what they mean is the runtime's business.
 */
export class SessionExtensions {
  private readonly lists: SessionExtensionsRecord;

  constructor(
    record: SessionExtensionsRecord | undefined,
    private readonly onChange: () => void,
  ) {
    this.lists = {
      skills: [...(record?.skills ?? [])],
      agents: [...(record?.agents ?? [])],
      mcpServers: [...(record?.mcpServers ?? [])],
    };
  }

  list<K extends Kind>(kind: K): ReadonlyArray<EntryOf<K>> {
    return this.lists[kind] as ReadonlyArray<EntryOf<K>>;
  }

  get<K extends Kind>(kind: K, name: string): EntryOf<K> | undefined {
    return this.list(kind).find((entry) => entry.name === name);
  }

  /** False when the session already has an entry of that name. */
  add<K extends Kind>(kind: K, entry: EntryOf<K>): boolean {
    if (this.get(kind, entry.name)) return false;
    (this.lists[kind] as Array<EntryOf<K>>).push(entry);
    this.onChange();
    return true;
  }

  /** False when there was none of that name. */
  remove(kind: Kind, name: string): boolean {
    const list = this.lists[kind] as Array<StoredDefinition | StoredMcpServer>;
    const index = list.findIndex((entry) => entry.name === name);
    if (index < 0) return false;
    list.splice(index, 1);
    this.onChange();
    return true;
  }

  toRecord(): SessionExtensionsRecord {
    return structuredClone(this.lists);
  }
}
