/**
 * The PostgreSQL schema, as numbered migrations. A migration is applied once, in order, in its own
 * transaction; a released version is never edited, a change is a new migration (the numbers are
 * recorded in agentd.schema_migrations).
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const SCHEMA = "agentd";

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "sessions, their messages and event logs",
    sql: `
CREATE TABLE agentd.sessions (
  id text PRIMARY KEY,
  owner text NOT NULL,
  parent_id text,
  created_at timestamptz NOT NULL,
  -- The record without its messages, as JSON text. Text, not json or jsonb: PostgreSQL's JSON types
  -- refuse what JSON.stringify may write (\\u0000, lone surrogates), and agentd never queries inside.
  snapshot text NOT NULL,
  message_count integer NOT NULL DEFAULT 0,
  last_message_id text,
  -- The newest event stored (events at or below it are not stored again), and what is retained.
  events_through bigint NOT NULL DEFAULT 0,
  event_count integer NOT NULL DEFAULT 0,
  event_bytes bigint NOT NULL DEFAULT 0,
  -- Bumped by every save: what optimistic concurrency checks against.
  version bigint NOT NULL DEFAULT 1,
  saved_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_owner_created ON agentd.sessions (owner, created_at, id);
CREATE INDEX sessions_created ON agentd.sessions (created_at, id);
CREATE INDEX sessions_parent ON agentd.sessions (parent_id) WHERE parent_id IS NOT NULL;

CREATE TABLE agentd.messages (
  session_id text NOT NULL REFERENCES agentd.sessions (id) ON DELETE CASCADE,
  position integer NOT NULL,
  body text NOT NULL,
  PRIMARY KEY (session_id, position)
);

CREATE TABLE agentd.events (
  session_id text NOT NULL REFERENCES agentd.sessions (id) ON DELETE CASCADE,
  sequence bigint NOT NULL,
  -- The event's JSON size plus one, as the file store counts a line.
  bytes integer NOT NULL,
  body text NOT NULL,
  PRIMARY KEY (session_id, sequence)
);

-- Drops a session's oldest events until both bounds hold, keeping at least the newest one. It walks
-- only the events it drops: the session row keeps the count and the bytes.
CREATE FUNCTION agentd.trim_events(sid text, max_events integer, max_bytes bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  n integer;
  b bigint;
  r record;
  drop_through bigint := NULL;
BEGIN
  SELECT s.event_count, s.event_bytes INTO n, b FROM agentd.sessions s WHERE s.id = sid;
  IF n <= max_events AND b <= max_bytes THEN
    RETURN;
  END IF;
  FOR r IN SELECT e.sequence, e.bytes FROM agentd.events e WHERE e.session_id = sid ORDER BY e.sequence LOOP
    EXIT WHEN n <= 1 OR (n <= max_events AND b <= max_bytes);
    n := n - 1;
    b := b - r.bytes;
    drop_through := r.sequence;
  END LOOP;
  IF drop_through IS NOT NULL THEN
    DELETE FROM agentd.events e WHERE e.session_id = sid AND e.sequence <= drop_through;
    UPDATE agentd.sessions s SET event_count = n, event_bytes = b WHERE s.id = sid;
  END IF;
END $$;

-- Stores a batch of saves in one statement (one transaction, one commit for all of them). Each
-- element: {id, owner, parentId, createdAt, snapshot, from, count, messages, lastMessageId, events}:
-- messages replace the stored ones from position "from" on (count is the transcript's length after
-- them), events are {s: sequence, b: bytes, e: event}. Snapshots, messages and events are JSON
-- strings holding their JSON text, stored as that text. The batch is parsed once (json_to_recordset):
-- each -> on a json value would parse its text again.
CREATE FUNCTION agentd.save_sessions(batch json, max_events integer, max_bytes bigint)
RETURNS TABLE (saved_id text, saved_version bigint)
LANGUAGE plpgsql AS $$
DECLARE
  s record;
  through bigint;
  added_count integer;
  added_bytes bigint;
  added_through bigint;
  v bigint;
BEGIN
  FOR s IN
    SELECT * FROM json_to_recordset(batch) AS x(
      id text, owner text, "parentId" text, "createdAt" timestamptz, snapshot text,
      "from" integer, count integer, messages json, "lastMessageId" text, events json)
  LOOP
    INSERT INTO agentd.sessions AS t (id, owner, parent_id, created_at, snapshot, message_count, last_message_id)
    VALUES (s.id, s.owner, s."parentId", s."createdAt", s.snapshot, s.count, s."lastMessageId")
    ON CONFLICT (id) DO UPDATE SET
      owner = EXCLUDED.owner,
      parent_id = EXCLUDED.parent_id,
      snapshot = EXCLUDED.snapshot,
      message_count = EXCLUDED.message_count,
      last_message_id = EXCLUDED.last_message_id,
      version = t.version + 1,
      saved_at = now()
    RETURNING t.version, t.events_through INTO v, through;
    DELETE FROM agentd.messages m WHERE m.session_id = s.id AND m.position >= s."from";
    INSERT INTO agentd.messages (session_id, position, body)
    SELECT s.id, s."from" + (x.ord - 1)::integer, x.value
    FROM json_array_elements_text(s.messages) WITH ORDINALITY AS x(value, ord);
    WITH added AS (
      INSERT INTO agentd.events (session_id, sequence, bytes, body)
      SELECT s.id, e.s, e.b, e.e FROM json_to_recordset(s.events) AS e(s bigint, b integer, e text)
      WHERE e.s > through
      ON CONFLICT DO NOTHING
      RETURNING sequence, bytes
    )
    SELECT count(*), coalesce(sum(added.bytes), 0), max(added.sequence) INTO added_count, added_bytes, added_through FROM added;
    IF added_count > 0 THEN
      UPDATE agentd.sessions t
      SET event_count = t.event_count + added_count, event_bytes = t.event_bytes + added_bytes, events_through = added_through
      WHERE t.id = s.id;
      PERFORM agentd.trim_events(s.id, max_events, max_bytes);
    END IF;
    saved_id := s.id;
    saved_version := v;
    RETURN NEXT;
  END LOOP;
END $$;
`,
  },
];
