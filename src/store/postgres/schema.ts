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
  {
    version: 2,
    name: "nodes, leases, fencing and cluster-wide session counts",
    sql: `
-- The agentd processes sharing this database. A node whose heartbeat is older than its leases'
-- time to live is gone; the leases it held expire and other nodes take them.
CREATE TABLE agentd.nodes (
  id text PRIMARY KEY,
  address text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now(),
  draining boolean NOT NULL DEFAULT false
);

-- A session tree (a top-level session and its descendants) is run by at most one node: the holder
-- of its lease. Every write of the holder carries the epoch it took the lease at; a write with an
-- older epoch (a holder that was paused or cut off past its lease) is refused: fenced. A destroyed
-- tree's lease stays, marked deleted, so that a late write of a fenced node cannot bring it back.
CREATE TABLE agentd.leases (
  root_id text PRIMARY KEY,
  node_id text,
  epoch bigint NOT NULL,
  expires_at timestamptz NOT NULL,
  deleted boolean NOT NULL DEFAULT false
);
CREATE INDEX leases_node ON agentd.leases (node_id) WHERE node_id IS NOT NULL;

ALTER TABLE agentd.sessions ADD COLUMN root_id text;
WITH RECURSIVE tree (id, root_id) AS (
  SELECT id, id FROM agentd.sessions WHERE parent_id IS NULL OR parent_id NOT IN (SELECT id FROM agentd.sessions)
  UNION ALL
  SELECT s.id, tree.root_id FROM agentd.sessions s JOIN tree ON s.parent_id = tree.id
)
UPDATE agentd.sessions s SET root_id = tree.root_id FROM tree WHERE tree.id = s.id;
CREATE INDEX sessions_root ON agentd.sessions (root_id);

-- Sessions per owner, and in all ('' is no owner's name: owners are never empty): what the
-- session limits are checked against, by every node alike.
CREATE TABLE agentd.session_counts (
  owner text PRIMARY KEY,
  sessions integer NOT NULL
);
INSERT INTO agentd.session_counts (owner, sessions) SELECT owner, count(*) FROM agentd.sessions GROUP BY owner;
INSERT INTO agentd.session_counts (owner, sessions) SELECT '', count(*) FROM agentd.sessions;

CREATE FUNCTION agentd.count_session(who text, delta integer) RETURNS void
LANGUAGE sql AS $$
  -- The total first: every writer locks the rows in the same order (no deadlock between two owners).
  INSERT INTO agentd.session_counts AS c (owner, sessions) VALUES ('', delta), (who, delta)
  ON CONFLICT (owner) DO UPDATE SET sessions = c.sessions + EXCLUDED.sessions;
$$;

CREATE FUNCTION agentd.sessions_counted() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM agentd.count_session(NEW.owner, 1);
  ELSE
    PERFORM agentd.count_session(OLD.owner, -1);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER sessions_counted AFTER INSERT OR DELETE ON agentd.sessions FOR EACH ROW EXECUTE FUNCTION agentd.sessions_counted();

DROP FUNCTION agentd.save_sessions(json, integer, bigint);

-- As in version 1, plus: each element names its tree ("root") and, on a node of a cluster
-- (node not null), the lease epoch it writes under. A write whose tree's lease another node holds,
-- or holds at a newer epoch, is not made: its row says "fenced". A new tree's first write takes
-- its lease. A new session past a session limit raises agentd_limit (the batch is retried one by
-- one, so only that save fails).
CREATE FUNCTION agentd.save_sessions(batch json, max_events integer, max_bytes bigint, node text, lease_ms integer, max_sessions integer, max_per_owner integer)
RETURNS TABLE (saved_id text, outcome text)
LANGUAGE plpgsql AS $$
DECLARE
  s record;
  through bigint;
  added_count integer;
  added_bytes bigint;
  added_through bigint;
  inserted boolean;
  holder text;
  held_epoch bigint;
  gone boolean;
  counted integer;
BEGIN
  IF node IS NOT NULL THEN
    -- The batch's leases locked in one order, the order the heartbeat renews them in: no deadlock.
    PERFORM 1 FROM agentd.leases l
    WHERE l.root_id IN (SELECT x.root FROM json_to_recordset(batch) AS x(root text))
    ORDER BY l.root_id FOR UPDATE;
  END IF;
  FOR s IN
    SELECT * FROM json_to_recordset(batch) AS x(
      id text, owner text, "parentId" text, root text, epoch bigint, "createdAt" timestamptz, snapshot text,
      "from" integer, count integer, messages json, "lastMessageId" text, events json)
  LOOP
    IF node IS NOT NULL THEN
      SELECT l.node_id, l.epoch, l.deleted INTO holder, held_epoch, gone FROM agentd.leases l WHERE l.root_id = s.root FOR UPDATE;
      IF NOT FOUND THEN
        -- A new tree: its first write takes the lease.
        INSERT INTO agentd.leases (root_id, node_id, epoch, expires_at)
        VALUES (s.root, node, s.epoch, now() + make_interval(secs => lease_ms / 1000.0))
        ON CONFLICT (root_id) DO NOTHING;
        SELECT l.node_id, l.epoch, l.deleted INTO holder, held_epoch, gone FROM agentd.leases l WHERE l.root_id = s.root FOR UPDATE;
      END IF;
      IF gone OR holder IS DISTINCT FROM node OR held_epoch <> s.epoch THEN
        saved_id := s.id;
        outcome := 'fenced';
        RETURN NEXT;
        CONTINUE;
      END IF;
    END IF;
    INSERT INTO agentd.sessions AS t (id, owner, parent_id, root_id, created_at, snapshot, message_count, last_message_id)
    VALUES (s.id, s.owner, s."parentId", s.root, s."createdAt", s.snapshot, s.count, s."lastMessageId")
    ON CONFLICT (id) DO UPDATE SET
      owner = EXCLUDED.owner,
      parent_id = EXCLUDED.parent_id,
      root_id = EXCLUDED.root_id,
      snapshot = EXCLUDED.snapshot,
      message_count = EXCLUDED.message_count,
      last_message_id = EXCLUDED.last_message_id,
      version = t.version + 1,
      saved_at = now()
    RETURNING t.events_through, (t.xmax = 0) INTO through, inserted;
    -- A session made top-level (its parent destroyed, children orphaned) takes its descendants along.
    IF NOT inserted THEN
      WITH RECURSIVE below (id) AS (
        SELECT c.id FROM agentd.sessions c WHERE c.parent_id = s.id AND c.root_id IS DISTINCT FROM s.root
        UNION ALL
        SELECT c.id FROM agentd.sessions c JOIN below ON c.parent_id = below.id
      )
      UPDATE agentd.sessions c SET root_id = s.root FROM below WHERE c.id = below.id;
    END IF;
    IF inserted THEN
      -- The trigger has counted it; over a limit, the statement fails and nothing is kept.
      SELECT c.sessions INTO counted FROM agentd.session_counts c WHERE c.owner = '';
      IF counted > max_sessions THEN
        RAISE EXCEPTION 'agentd_limit: the cluster is at its session limit (limits.maxSessions = %); destroy sessions or ask the operator to raise the limit', max_sessions
          USING ERRCODE = 'check_violation';
      END IF;
      SELECT c.sessions INTO counted FROM agentd.session_counts c WHERE c.owner = s.owner;
      IF counted > max_per_owner THEN
        RAISE EXCEPTION 'agentd_limit: owner "%" has % sessions, the per-owner limit (limits.maxSessionsPerOwner = %); destroy some first', s.owner, counted - 1, max_per_owner
          USING ERRCODE = 'check_violation';
      END IF;
    END IF;
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
    outcome := 'saved';
    RETURN NEXT;
  END LOOP;
END $$;

-- Deletes a session. On a node of a cluster (node not null) only under the tree's lease at the
-- writer's epoch, or in a tree whose root was deleted already (the rest of a cascade); the lease row
-- is locked like save_sessions locks it. A deleted root's lease stays, marked deleted. Returns
-- whether it was allowed.
CREATE FUNCTION agentd.delete_session(sid text, root text, node text, writer_epoch bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  holder text;
  held_epoch bigint;
  gone boolean;
BEGIN
  IF node IS NOT NULL THEN
    SELECT l.node_id, l.epoch, l.deleted INTO holder, held_epoch, gone FROM agentd.leases l WHERE l.root_id = root FOR UPDATE;
    IF FOUND AND NOT gone AND (holder IS DISTINCT FROM node OR held_epoch <> writer_epoch) THEN
      RETURN false;
    END IF;
  END IF;
  DELETE FROM agentd.sessions s WHERE s.id = sid;
  UPDATE agentd.leases l SET deleted = true, node_id = NULL, epoch = l.epoch + 1, expires_at = now() WHERE l.root_id = sid;
  RETURN true;
END $$;
`,
  },
  {
    version: 3,
    name: "owners' spending",
    sql: `
-- What each owner spent per UTC day, over all their sessions and all nodes, destroyed sessions
-- included: only ever added to (budgets per owner are checked against it).
CREATE TABLE agentd.owner_spend (
  owner text NOT NULL,
  day date NOT NULL,
  input_tokens bigint NOT NULL DEFAULT 0,
  output_tokens bigint NOT NULL DEFAULT 0,
  cost_usd double precision NOT NULL DEFAULT 0,
  PRIMARY KEY (owner, day)
);

-- How much of each session's own spending the ledger has (running totals, only raised), written in
-- the same statement as the rows: after a crash, what a session's record holds beyond its mark is
-- added, and nothing twice.
CREATE TABLE agentd.spend_marks (
  session_id text PRIMARY KEY,
  input_tokens bigint NOT NULL,
  output_tokens bigint NOT NULL,
  cost_usd double precision NOT NULL
);

-- A deleted session's mark is not needed any more (its record is gone).
CREATE FUNCTION agentd.drop_spend_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM agentd.spend_marks WHERE session_id = OLD.id;
  RETURN NULL;
END $$;
CREATE TRIGGER drop_spend_mark AFTER DELETE ON agentd.sessions FOR EACH ROW EXECUTE FUNCTION agentd.drop_spend_mark();
`,
  },
  {
    version: 4,
    name: "each node's console address",
    sql: `
-- Where a node's web console answers (host:port), '' when it has none: a console sends a request
-- about a session another node runs to that node's console.
ALTER TABLE agentd.nodes ADD COLUMN console_address text NOT NULL DEFAULT '';
`,
  },
];
