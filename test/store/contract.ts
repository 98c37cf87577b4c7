/**
 * The behaviour every SessionStore (src/store/types.ts) owes its callers, as one suite each store
 * runs (test/store/contract.test.ts). What is tested here is what the interface's doc comments
 * promise, plus what the stores must agree on so that a data directory or database can be swapped
 * for another: the event byte accounting of the retention bounds, for one. Store-specific
 * mechanics (files, fsync counts, damage, migrations) stay in each store's own tests.
 *
 * Most cases are written once as a scenario (what to store, then what a store over that storage
 * must hold) and run twice: on the same store, and on a second store over the same storage (a
 * restart) when the store can be reopened.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { SessionEvent } from "../../src/events/types.js";
import type { PendingConfirmation } from "../../src/policy/confirmations.js";
import type { MessageRecord, SessionRecord } from "../../src/store/record.js";
import type { EventRetention, SessionStore } from "../../src/store/types.js";
import { sessionRecord } from "../helpers/records.js";
import { event, events, message, messages, recordWith } from "./builders.js";

export interface StoreUnderTest {
  /** A store with these event bounds over fresh, empty storage. */
  open(retention?: EventRetention): Promise<SessionStore>;
  /** A second store over the SAME storage (what a restart sees); null for a store that nothing outlives (memory). */
  reopen: ((retention?: EventRetention) => Promise<SessionStore>) | null;
  /** Releases everything (temp dirs, databases). */
  cleanup(): Promise<void>;
}

// ---- Values ----

const CREATED = "2026-01-01T00:00:00.000Z";
const RICH_TEXT = 'Please read "a.txt" and write ü.txt 🎉';

/** Text that breaks naive encodings: quotes, backslashes, escapes as text, control characters, NUL, every plane, separators. */
export const TRICKY_TEXT =
  `plain ASCII, "double" and 'single' quotes, a back\\slash, \\n and \\u0000 as text (not escapes), {"json": "in text"}\n` +
  "line two\r\nCRLF, \ttab, NUL \u0000 in the middle, controls \u0001\u001f\u007f\u0085\n" +
  "ünïcödé, 中文, 日本語, 한국어, עברית, العربية, emoji 🎉👩‍👩‍👧‍👦🏳️‍🌈, astral 𝄞, combining e\u0301, " +
  "BOM \ufeff, separators \u2028\u2029, replacement \ufffd, noncharacter \uffff, and a trailing NUL\u0000";

/** JavaScript strings need not be well-formed UTF-16: a surrogate half alone, as a split emoji leaves it. */
export const LONE_SURROGATES = `a high half alone \ud83c, a low half alone \udf89, reversed \udf89\ud83c, at the end \ud83d`;

/** Each event's size as the retention bounds count it: the UTF-8 bytes of its JSON text, plus one (a line's newline). */
export function eventBytes(stored: SessionEvent): number {
  return Buffer.byteLength(JSON.stringify(stored)) + 1;
}

/** A text_delta event of exactly `bytes` as eventBytes counts them, padded with two-byte characters (so characters ≠ bytes). */
export function eventOfBytes(sessionId: string, sequence: number, bytes: number): SessionEvent {
  const extra = bytes - eventBytes(event(sessionId, sequence, ""));
  if (extra < 0) throw new Error(`an event of session ${sessionId} cannot be as small as ${bytes} bytes`);
  const built = event(sessionId, sequence, "é".repeat(Math.floor(extra / 2)) + "x".repeat(extra % 2));
  if (eventBytes(built) !== bytes) throw new Error(`built an event of ${eventBytes(built)} bytes, not ${bytes}`);
  return built;
}

function confirmation(sessionId: string, argumentsJson = '{"path":"notes.txt","content":"hello"}'): PendingConfirmation {
  return {
    id: "conf_1",
    sessionId,
    turnId: "t2",
    callId: "call_3",
    toolName: "write_file",
    argumentsJson,
    rule: "ask:write_file",
    readOnly: false,
    createdAtMs: 1_767_225_600_000,
    deadlineMs: 1_767_225_630_000,
  };
}

/** A transcript with every kind of message: user, assistant with tool calls, tool results (ok and error), a summary. */
export function richMessages(text = RICH_TEXT): MessageRecord[] {
  return [
    { id: "m0", role: "user", text, toolCalls: [], createdAt: CREATED, turnId: "t1" },
    {
      id: "m1",
      role: "assistant",
      text: `Reading first. ${text}`,
      toolCalls: [
        { id: "call_1", name: "read_file", argumentsJson: '{"path":"a \\"quoted\\".txt"}' },
        { id: "call_2", name: "write_file", argumentsJson: JSON.stringify({ path: "ü.txt", content: text }) },
      ],
      createdAt: "2026-01-01T00:00:01.000Z",
      turnId: "t1",
    },
    {
      id: "m2",
      role: "tool",
      text: "",
      toolCalls: [],
      toolResult: { callId: "call_1", name: "read_file", output: `contents of a:\n${text}`, isError: false },
      createdAt: "2026-01-01T00:00:02.000Z",
      turnId: "t1",
    },
    {
      id: "m3",
      role: "tool",
      text: "",
      toolCalls: [],
      toolResult: { callId: "call_2", name: "write_file", output: 'denied by rule "deny:write_file"', isError: true },
      createdAt: "2026-01-01T00:00:03.000Z",
      turnId: "t1",
    },
    { id: "m4", role: "user", kind: "summary", text: `Summary: ${text}`, toolCalls: [], createdAt: "2026-01-01T00:00:04.000Z", turnId: "t2" },
    { id: "m5", role: "user", text: "Now write it anyway", toolCalls: [], createdAt: "2026-01-01T00:00:05.000Z", turnId: "t2" },
  ];
}

/** A record with every optional field of SessionRecord filled, and `text` in every free-text place. */
export function richRecord(id: string, text = RICH_TEXT): SessionRecord {
  return {
    version: 1,
    id,
    owner: `owner ${text}`,
    parentId: "parent_session",
    state: "paused",
    config: {
      model: {
        provider: "anthropic",
        model: "claude-test",
        baseUrl: "https://models.example/v1",
        apiKeyEnv: "ANTHROPIC_API_KEY",
        temperature: 0.25,
        maxOutputTokens: 4096,
        scriptPath: "",
        scriptJson: '[{"text":"hi"}]',
        contextWindow: 200_000,
      },
      systemPrompt: `You are careful.\n${text}`,
      limits: { maxToolRounds: 8, toolTimeoutMs: 30_000 },
      permissions: { deny: ["bash:rm *"], ask: ["write_file"], allow: ["read_file", "glob"], defaultDecision: "ask" },
      confirmation: { enabled: true, timeoutMs: 60_000, timeoutAction: "reject" },
      tools: ["read_file", "write_file", "task"],
      context: { autoCompact: false, autoCompactThreshold: 0.5 },
    },
    workspace: "/work/a folder/ünï",
    ephemeral: true,
    labels: { team: "core", "ключ": `значение ${text}`, empty: "" },
    createdAt: CREATED,
    updatedAt: "2026-01-02T03:04:05.678Z",
    usage: { inputTokens: 123_456, outputTokens: 7_890 },
    lastSequence: 42,
    sequenceReservedThrough: 50,
    skippedSequences: [
      { after: 10, through: 12 },
      { after: 20, through: 20 },
    ],
    messages: richMessages(text),
    scriptSteps: 3,
    callInFlight: { callId: "call_2", toolName: "write_file", turnId: "t1" },
    runningTurnId: "t2",
    pendingConfirmation: confirmation(id, JSON.stringify({ path: "ü.txt", content: text })),
    extensions: {
      skills: [
        { name: "review", text: `---\nname: review\n---\n${text}`, dir: "/skills/review" },
        { name: "inline", text: "---\nname: inline\n---\nDo it.", dir: null },
      ],
      agents: [{ name: "reviewer", text: `---\nname: reviewer\n---\n${text}`, dir: null }],
      mcpServers: [
        { name: "local", spec: { type: "stdio", command: "node", args: ["server.js", "--flag", text], env: { TOKEN: "s3cret" }, cwd: "" } },
        { name: "remote", spec: { type: "http", url: "https://mcp.example/mcp", headers: { authorization: "Bearer x" } } },
        { name: "legacy", spec: { type: "sse", url: "https://mcp.example/sse", headers: {} } },
      ],
    },
    agent: "reviewer",
    context: {
      ops: [
        { type: "compact", at: 5, keepFrom: 3, summaryIndex: 4, method: "summary", trigger: "automatic", atMs: 1_767_225_601_000 },
        { type: "uncompact", at: 5, atMs: 1_767_225_602_000 },
        { type: "compact", at: 5, keepFrom: 2, summaryIndex: null, method: "truncation", trigger: "overflow", atMs: 1_767_225_603_000 },
        { type: "clear", at: 5, atMs: 1_767_225_604_000 },
        { type: "rewind", at: 6, from: 4, turnId: "t2", atMs: 1_767_225_605_000 },
      ],
      lastCall: { inputTokens: 9_876, at: 6, ops: 5 },
    },
  };
}

/** Events of every shape, numbered from `from`, with `text` in their free-text places. */
export function richEvents(sessionId: string, from: number, text = RICH_TEXT): SessionEvent[] {
  const at = (i: number) => ({ sessionId, sequence: from + i, timeMs: 1_767_225_600_000 + i });
  const child: SessionEvent = { sessionId: "child_1", sequence: 7, timeMs: 1_767_225_600_500, turnId: "ct", payload: { type: "text_delta", text } };
  return [
    { ...at(0), turnId: "t1", payload: { type: "turn_started", prompt: text } },
    { ...at(1), turnId: "t1", payload: { type: "text_delta", text } },
    { ...at(2), turnId: "t1", payload: { type: "tool_call", call: { id: "call_1", name: "read_file", argumentsJson: JSON.stringify({ path: text }) } } },
    { ...at(3), turnId: "t1", payload: { type: "tool_result", result: { callId: "call_1", name: "read_file", output: text, isError: true } } },
    { ...at(4), turnId: "t1", payload: { type: "permission_denied", callId: "call_2", toolName: "bash", rule: null } },
    { ...at(5), turnId: "t1", payload: { type: "confirmation_required", confirmation: confirmation(sessionId) } },
    {
      ...at(6),
      turnId: "t1",
      payload: { type: "usage", step: { inputTokens: 1, outputTokens: 2 }, turn: { inputTokens: 3, outputTokens: 4 }, session: { inputTokens: 5, outputTokens: 6 } },
    },
    { ...at(7), turnId: "t1", payload: { type: "subagent_event", childSessionId: "child_1", agent: "reviewer", event: child } },
    {
      ...at(8),
      turnId: "t1",
      payload: { type: "turn_completed", result: { turnId: "t1", text, stopReason: "end_turn", usage: { inputTokens: 3, outputTokens: 4 }, toolRounds: 1 } },
    },
    { ...at(9), turnId: "", payload: { type: "state_changed", state: "idle" } },
    { ...at(10), turnId: "", payload: { type: "call_in_doubt", callId: "call_2", toolName: "write_file" } },
  ];
}

/** A message with another id (and text) than builders.message(n) at the same position. */
function otherMessage(n: number, prefix = "x"): MessageRecord {
  return { ...message(n), id: `${prefix}${n}`, text: `${prefix} message ${n}` };
}

const byId = (a: SessionRecord, b: SessionRecord): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/** What loadAll returns, with nothing failed or repaired, equals these records (in any order). */
async function expectRecords(store: SessionStore, expected: SessionRecord[]): Promise<void> {
  const result = await store.loadAll();
  expect(result.failures).toEqual([]);
  expect(result.warnings ?? []).toEqual([]);
  expect([...result.records].sort(byId)).toEqual([...expected].sort(byId));
}

async function expectEvents(store: SessionStore, sessionId: string, expected: SessionEvent[], oldest: number): Promise<void> {
  expect(await store.readEvents(sessionId, 0, Number.MAX_SAFE_INTEGER)).toEqual({ events: expected, oldest });
}

// ---- Scenarios: what to store, then what a store over that storage holds ----

/**
 * Enough to have every save of a round in flight at once. (The file store's first checkpoint of 200
 * new session folders alone takes about 0.65 s of fsyncs, which a reopen and its loadAll both pay.)
 */
const CONCURRENT_SESSIONS = 100;

interface Scenario {
  retention?: EventRetention;
  /** Saves and deletes; everything it awaited was acknowledged. It may check intermediate states on its own store. */
  act(store: SessionStore): Promise<void>;
  /** What a store over that storage (the same one, or a reopened one) holds. */
  check(store: SessionStore): Promise<void>;
}

/** Each scenario is made anew for every test: act keeps what check expects in the closure. */
const scenarios: Array<[name: string, make: () => Scenario]> = [
  [
    "loadAll of empty storage returns no records and no failures",
    () => ({
      act: async () => {},
      check: async (store) => {
        expect(await store.loadAll()).toEqual(expect.objectContaining({ records: [], failures: [] }));
        await expectRecords(store, []);
        expect(await store.readEvents("nobody", 0, 10)).toEqual({ events: [], oldest: 0 });
      },
    }),
  ],
  [
    "save then loadAll returns the record deep-equal, every optional field filled, and the events as sent",
    () => {
      const record = richRecord("rich");
      const sent = richEvents("rich", 1);
      return {
        act: async (store) => {
          await store.save(structuredClone(record), structuredClone(sent));
        },
        check: async (store) => {
          await expectRecords(store, [record]);
          await expectEvents(store, "rich", sent, 1);
        },
      };
    },
  ],
  [
    "a record without the optional fields comes back without them (none added, not even as null)",
    () => {
      const plain = sessionRecord("plain", 0);
      const withMessages = recordWith("with_messages", messages(3));
      return {
        act: async (store) => {
          await store.save(structuredClone(plain), []);
          await store.save(structuredClone(withMessages), []);
        },
        check: async (store) => {
          await expectRecords(store, [plain, withMessages]);
          const loaded = (await store.loadAll()).records.find((r) => r.id === "plain")!;
          expect(Object.keys(loaded).sort()).toEqual(Object.keys(plain).sort());
        },
      };
    },
  ],
  [
    "text with unicode, emoji, NUL, quotes, backslashes and newlines survives exactly, in records and events",
    () => {
      const record = richRecord("tricky", TRICKY_TEXT);
      const sent = richEvents("tricky", 1, TRICKY_TEXT);
      return {
        act: async (store) => {
          await store.save(structuredClone(record), structuredClone(sent));
        },
        check: async (store) => {
          await expectRecords(store, [record]);
          const loaded = (await store.loadAll()).records[0]!;
          // Character for character (toEqual says so too; this names the place when it fails).
          expect(loaded.messages[0]!.text).toBe(TRICKY_TEXT);
          expect(loaded.config.systemPrompt).toBe(`You are careful.\n${TRICKY_TEXT}`);
          expect(loaded.labels["ключ"]).toBe(`значение ${TRICKY_TEXT}`);
          await expectEvents(store, "tricky", sent, 1);
        },
      };
    },
  ],
  [
    "text with lone surrogates (not well-formed UTF-16) survives exactly, in records and events",
    () => {
      const record = richRecord("surrogates", LONE_SURROGATES);
      const sent = richEvents("surrogates", 1, LONE_SURROGATES);
      return {
        act: async (store) => {
          await store.save(structuredClone(record), structuredClone(sent));
        },
        check: async (store) => {
          await expectRecords(store, [record]);
          await expectEvents(store, "surrogates", sent, 1);
        },
      };
    },
  ],
  [
    "each save replaces the whole record: fields a later save leaves out are gone, fields it sets to null are null",
    () => {
      const later: SessionRecord = {
        ...sessionRecord("replaced", 60),
        messages: richMessages(),
        labels: { other: "label" },
        callInFlight: null,
        runningTurnId: null,
        pendingConfirmation: null,
      };
      return {
        act: async (store) => {
          await store.save(richRecord("replaced"), []);
          await store.save(structuredClone(later), []);
        },
        check: async (store) => {
          await expectRecords(store, [later]);
        },
      };
    },
  ],
  [
    "later changes to the caller's objects after save resolves are not stored, nor are changes to what loadAll and readEvents return",
    () => {
      let expectedRecord: SessionRecord;
      let expectedEvents: SessionEvent[];
      return {
        act: async (store) => {
          const record = richRecord("isolated");
          const sent = richEvents("isolated", 1);
          expectedRecord = structuredClone(record);
          expectedEvents = structuredClone(sent);
          await store.save(record, sent);
          // Everything reachable from what was passed, changed in place.
          record.lastSequence = 999;
          record.state = "closed";
          record.labels.team = "changed";
          record.labels.added = "added";
          record.config.limits.maxToolRounds = 99;
          record.config.permissions!.allow.push("everything");
          record.config.model!.temperature = 1;
          record.usage.inputTokens = 0;
          record.skippedSequences![0]!.through = 99;
          record.callInFlight!.toolName = "changed";
          record.pendingConfirmation!.argumentsJson = "{}";
          record.extensions!.skills[0]!.text = "changed";
          record.extensions!.mcpServers.pop();
          record.context!.ops.length = 0;
          record.context!.lastCall!.inputTokens = 1;
          record.messages[0]!.text = "changed";
          record.messages[1]!.toolCalls[0]!.argumentsJson = "{}";
          record.messages[1]!.toolCalls.push({ id: "call_9", name: "bash", argumentsJson: "{}" });
          record.messages[2]!.toolResult!.output = "changed";
          record.messages.splice(1, 2);
          sent[0]!.timeMs = 0;
          (sent[1]!.payload as { text: string }).text = "changed";
          sent.pop();
        },
        check: async (store) => {
          await expectRecords(store, [expectedRecord]);
          await expectEvents(store, "isolated", expectedEvents, 1);
          // What the store hands out is the caller's to change too.
          const loaded = (await store.loadAll()).records[0]!;
          loaded.labels.team = "changed";
          loaded.config.limits.maxToolRounds = 99;
          loaded.messages[0]!.text = "changed";
          loaded.messages.push(message(99));
          const read = await store.readEvents("isolated", 0, 100);
          (read.events[1]!.payload as { text: string }).text = "changed";
          read.events.pop();
          await expectRecords(store, [expectedRecord]);
          await expectEvents(store, "isolated", expectedEvents, 1);
        },
      };
    },
  ],
  [
    "messages are appended across saves, and the last save's other fields are kept",
    () => {
      const last = recordWith("growing", messages(7), 7);
      return {
        act: async (store) => {
          await store.save(recordWith("growing", messages(2), 2), []);
          await store.save(recordWith("growing", messages(2), 2), []); // nothing new
          await store.save(recordWith("growing", messages(5), 5), []);
          await store.save(structuredClone(last), []);
        },
        check: async (store) => {
          await expectRecords(store, [last]);
        },
      };
    },
  ],
  [
    "a save whose messages are not an extension of the stored ones (fewer, or another id at the last stored position) replaces them whole",
    () => {
      // Each session: the saves' transcripts in order; the last is what is stored.
      const cases: Record<string, MessageRecord[][]> = {
        fewer: [messages(4), messages(2)],
        emptied: [messages(2), []],
        same_length_other_last: [messages(3), [message(0), message(1), otherMessage(2)]],
        longer_other_last: [messages(3), [message(0), message(1), otherMessage(2), otherMessage(3)]],
        all_other: [messages(3), [0, 1, 2, 3, 4].map((n) => otherMessage(n))],
        rewritten_then_appended: [messages(4), [otherMessage(0)], [otherMessage(0), otherMessage(1), otherMessage(2)]],
        rewritten_then_rewritten: [messages(4), [otherMessage(0), otherMessage(1)], [otherMessage(0, "y")]],
        emptied_then_refilled: [messages(3), [], messages(2)],
      };
      const expected = Object.entries(cases).map(([id, saves]) => recordWith(id, saves.at(-1)!, 9));
      return {
        act: async (store) => {
          for (const [id, saves] of Object.entries(cases)) {
            for (const list of saves) await store.save(recordWith(id, structuredClone(list), 9), []);
          }
        },
        check: async (store) => {
          await expectRecords(store, expected);
        },
      };
    },
  ],
  [
    "messages pushed onto the shared transcript after save() was called are not stored by that save",
    () => ({
      act: async (store) => {
        // The session's own array, shared with the store, which the session appends to (SessionStore.save).
        const transcript = messages(2);
        const first = store.save(recordWith("shared", transcript, 2), []);
        transcript.push(message(2), message(3));
        await first;
        await expectRecords(store, [recordWith("shared", messages(2), 2)]);

        const second = store.save(recordWith("shared", transcript, 4), []);
        transcript.push(message(4));
        await second;
        await expectRecords(store, [recordWith("shared", messages(4), 4)]);

        // From empty, too.
        const empty: MessageRecord[] = [];
        const third = store.save(recordWith("shared_from_empty", empty, 0), []);
        empty.push(message(0));
        await third;
        transcript.push(message(5));
      },
      check: async (store) => {
        await expectRecords(store, [recordWith("shared", messages(4), 4), recordWith("shared_from_empty", [], 0)]);
      },
    }),
  ],
  [
    "events are stored once each by sequence: re-sent ones are ignored, even with other contents",
    () => ({
      act: async (store) => {
        await store.save(sessionRecord("a", 4), events("a", 1, 4));
        await store.save(sessionRecord("a", 6), [event("a", 3, "re-sent"), event("a", 4, "re-sent"), ...events("a", 5, 6)]);
        await store.save(sessionRecord("a", 6), []);
        await store.save(sessionRecord("a", 6), events("a", 1, 6, "all re-sent"));
        await store.save(sessionRecord("a", 7), [...events("a", 6, 6, "re-sent"), event("a", 7)]);
      },
      check: async (store) => {
        await expectEvents(store, "a", events("a", 1, 7), 1);
      },
    }),
  ],
  [
    "readEvents returns the retained events after `after`, at most `limit`, in sequence order, across gaps",
    () => ({
      act: async (store) => {
        await store.save(sessionRecord("paged", 3), events("paged", 1, 3));
        await store.save(sessionRecord("paged", 7), events("paged", 4, 7));
        await store.save(sessionRecord("paged", 10), events("paged", 8, 10));
        // Numbers skipped (reserved before a crash, never used): sequences need not be contiguous.
        await store.save(sessionRecord("gaps", 20), [event("gaps", 2), event("gaps", 3), event("gaps", 7), event("gaps", 8), event("gaps", 20)]);
        await store.save(sessionRecord("other", 2), events("other", 1, 2, "other session"));
      },
      check: async (store) => {
        const page = async (id: string, after: number, limit: number) => store.readEvents(id, after, limit);
        expect(await page("paged", 0, 3)).toEqual({ events: events("paged", 1, 3), oldest: 1 });
        expect(await page("paged", 3, 3)).toEqual({ events: events("paged", 4, 6), oldest: 1 });
        expect(await page("paged", 6, 100)).toEqual({ events: events("paged", 7, 10), oldest: 1 });
        expect(await page("paged", 4, 1)).toEqual({ events: [event("paged", 5)], oldest: 1 });
        expect(await page("paged", 9, 1)).toEqual({ events: [event("paged", 10)], oldest: 1 });
        expect(await page("paged", 10, 5)).toEqual({ events: [], oldest: 1 });
        expect(await page("paged", 1_000, 5)).toEqual({ events: [], oldest: 1 });
        expect(await page("paged", 0, 0)).toEqual({ events: [], oldest: 1 });
        expect(await page("paged", 0, Number.MAX_SAFE_INTEGER)).toEqual({ events: events("paged", 1, 10), oldest: 1 });
        expect(await page("gaps", 0, 100)).toEqual({ events: [2, 3, 7, 8, 20].map((n) => event("gaps", n)), oldest: 2 });
        expect(await page("gaps", 1, 2)).toEqual({ events: [event("gaps", 2), event("gaps", 3)], oldest: 2 });
        expect(await page("gaps", 3, 100)).toEqual({ events: [7, 8, 20].map((n) => event("gaps", n)), oldest: 2 });
        expect(await page("gaps", 4, 100)).toEqual({ events: [7, 8, 20].map((n) => event("gaps", n)), oldest: 2 });
        expect(await page("gaps", 8, 1)).toEqual({ events: [event("gaps", 20)], oldest: 2 });
        expect(await page("gaps", 19, 1)).toEqual({ events: [event("gaps", 20)], oldest: 2 });
        expect(await page("other", 0, 100)).toEqual({ events: events("other", 1, 2, "other session"), oldest: 1 });
      },
    }),
  ],
  [
    "readEvents of an unknown session, or of one without events, returns no events and oldest 0",
    () => ({
      act: async (store) => {
        await store.save(recordWith("quiet", messages(2)), []);
        await store.save(sessionRecord("noisy"), events("noisy", 1, 3));
      },
      check: async (store) => {
        expect(await store.readEvents("unknown", 0, 100)).toEqual({ events: [], oldest: 0 });
        expect(await store.readEvents("unknown", 5, 0)).toEqual({ events: [], oldest: 0 });
        expect(await store.readEvents("quiet", 0, 100)).toEqual({ events: [], oldest: 0 });
        await expectEvents(store, "noisy", events("noisy", 1, 3), 1);
      },
    }),
  ],
  [
    "retention by count keeps each session's newest maxEvents events across saves, and oldest is the first kept",
    () => ({
      retention: { maxEvents: 3, maxBytes: 1_000_000 },
      act: async (store) => {
        await store.save(sessionRecord("a", 2), events("a", 1, 2));
        await store.save(sessionRecord("a", 5), events("a", 3, 5));
        await store.save(sessionRecord("a", 6), events("a", 6, 6));
        // Re-sent events are no newer: they change nothing.
        await store.save(sessionRecord("a", 6), events("a", 1, 6, "re-sent"));
        await store.save(sessionRecord("b", 10), events("b", 1, 10));
        await store.save(sessionRecord("c", 2), events("c", 1, 2));
      },
      check: async (store) => {
        await expectEvents(store, "a", events("a", 4, 6), 4);
        expect(await store.readEvents("a", 0, 1)).toEqual({ events: [event("a", 4)], oldest: 4 });
        expect(await store.readEvents("a", 2, 100)).toEqual({ events: events("a", 4, 6), oldest: 4 });
        expect(await store.readEvents("a", 4, 100)).toEqual({ events: events("a", 5, 6), oldest: 4 });
        expect(await store.readEvents("a", 6, 100)).toEqual({ events: [], oldest: 4 });
        await expectEvents(store, "b", events("b", 8, 10), 8);
        // Bounds are per session: c's few are all kept.
        await expectEvents(store, "c", events("c", 1, 2), 1);
      },
    }),
  ],
  [
    "retention by bytes counts each event as the UTF-8 bytes of its JSON plus one, and keeps the newest that fit",
    () => {
      const sized = (id: string, sizes: number[]) => sizes.map((bytes, i) => eventOfBytes(id, i + 1, bytes));
      // The newest two fill maxBytes exactly: they fit, the one before does not.
      const exact = sized("exact", [300, 300, 500, 500]);
      // The newest three are maxBytes + 1 with one byte per event for its newline, 2 under it without: two fit.
      const newline = sized("newline", [500, 333, 334, 334]);
      // Padded with two-byte characters: counted in characters (about 254 each), three would fit.
      const wide = sized("wide", [400, 400, 400, 400]);
      const added = sized("exact", [300, 300, 500, 500, 200]).slice(4);
      return {
        retention: { maxEvents: 100, maxBytes: 1_000 },
        act: async (store) => {
          await store.save(sessionRecord("exact", 4), exact.slice(0, 2));
          await store.save(sessionRecord("exact", 4), exact.slice(2));
          await store.save(sessionRecord("newline", 4), newline);
          await store.save(sessionRecord("wide", 4), wide);
          expect(await store.readEvents("exact", 0, 100)).toEqual({ events: exact.slice(2), oldest: 3 });
          // One more of 200: 200 + 500 fit, 200 + 500 + 500 do not.
          await store.save(sessionRecord("exact", 5), added);
        },
        check: async (store) => {
          await expectEvents(store, "exact", [exact[3]!, added[0]!], 4);
          await expectEvents(store, "newline", newline.slice(2), 3);
          await expectEvents(store, "wide", wide.slice(2), 3);
        },
      };
    },
  ],
  [
    "a single event larger than maxBytes is still kept, as the newest",
    () => {
      const big = eventOfBytes("big", 2, 5_000);
      const small = eventOfBytes("big", 3, 200);
      const first = eventOfBytes("alone", 1, 3_000);
      return {
        retention: { maxEvents: 100, maxBytes: 1_000 },
        act: async (store) => {
          await store.save(sessionRecord("big", 1), [eventOfBytes("big", 1, 200)]);
          await store.save(sessionRecord("big", 2), [big]);
          expect(await store.readEvents("big", 0, 100)).toEqual({ events: [big], oldest: 2 });
          await store.save(sessionRecord("big", 3), [small]);
          await store.save(sessionRecord("alone", 1), [first]);
        },
        check: async (store) => {
          // Once a newer one came, the big one is past the bound.
          await expectEvents(store, "big", [small], 3);
          await expectEvents(store, "alone", [first], 1);
        },
      };
    },
  ],
  [
    "delete removes the record and its events and leaves other sessions alone",
    () => {
      const kept = richRecord("kept");
      return {
        act: async (store) => {
          await store.save(richRecord("doomed"), richEvents("doomed", 1));
          await store.save(structuredClone(kept), richEvents("kept", 1));
          await store.save(recordWith("doomed", [...richMessages(), message(6)], 43), events("doomed", 12, 13));
          await store.delete("doomed");
          expect(await store.readEvents("doomed", 0, 100)).toEqual({ events: [], oldest: 0 });
        },
        check: async (store) => {
          await expectRecords(store, [kept]);
          expect(await store.readEvents("doomed", 0, 100)).toEqual({ events: [], oldest: 0 });
          await expectEvents(store, "kept", richEvents("kept", 1), 1);
        },
      };
    },
  ],
  [
    "delete of an unknown session resolves, and so does deleting one twice",
    () => {
      const kept = recordWith("kept", messages(2));
      return {
        act: async (store) => {
          await expect(store.delete("never_saved")).resolves.toBeUndefined();
          await store.save(structuredClone(kept), events("kept", 1, 2));
          await store.save(recordWith("twice", messages(1)), events("twice", 1, 1));
          await expect(store.delete("twice")).resolves.toBeUndefined();
          await expect(store.delete("twice")).resolves.toBeUndefined();
          await expect(store.delete("never_saved")).resolves.toBeUndefined();
        },
        check: async (store) => {
          await expectRecords(store, [kept]);
          await expectEvents(store, "kept", events("kept", 1, 2), 1);
          expect(await store.readEvents("twice", 0, 100)).toEqual({ events: [], oldest: 0 });
        },
      };
    },
  ],
  [
    "save after delete recreates the session from that save alone: no old fields, messages or events",
    () => {
      const recreated = recordWith("phoenix", [message(0), otherMessage(1)], 2);
      const fresh = events("phoenix", 1, 2, "after the delete");
      return {
        act: async (store) => {
          await store.save(richRecord("phoenix"), events("phoenix", 1, 5, "before the delete"));
          await store.delete("phoenix");
          await store.save(structuredClone(recreated), fresh);
        },
        check: async (store) => {
          await expectRecords(store, [recreated]);
          // Numbered from 1 again: the old log is gone, not a bar to the new one.
          await expectEvents(store, "phoenix", fresh, 1);
        },
      };
    },
  ],
  [
    `${CONCURRENT_SESSIONS} sessions saved concurrently, three chained saves each, all land and each session's last save wins`,
    () => {
      const ids = Array.from({ length: CONCURRENT_SESSIONS }, (_, i) => `s${String(i).padStart(3, "0")}`);
      const last = (id: string, i: number): SessionRecord => ({ ...recordWith(id, messages(5 + (i % 3)), 5), labels: { round: "3", index: String(i) } });
      return {
        act: async (store) => {
          await Promise.all(
            ids.map(async (id, i) => {
              await store.save({ ...recordWith(id, messages(2), 2), labels: { round: "1" }, agent: "first" }, events(id, 1, 2));
              await store.save({ ...recordWith(id, [otherMessage(0)], 4), labels: { round: "2" } }, events(id, 3, 4));
              await store.save(last(id, i), events(id, 4, 5));
            }),
          );
        },
        check: async (store) => {
          await expectRecords(
            store,
            ids.map((id, i) => last(id, i)),
          );
          const read = await Promise.all(ids.map((id) => store.readEvents(id, 0, 100)));
          expect(read).toEqual(ids.map((id) => ({ events: events(id, 1, 5), oldest: 1 })));
        },
      };
    },
  ],
  [
    "owners' spending adds up by owner and day, survives the owner's sessions, reads from a day on; sessions' marks only rise",
    () => {
      const row = (owner: string, day: string, inputTokens: number, outputTokens: number, costUsd: number) => ({ owner, day, inputTokens, outputTokens, costUsd });
      const mark = (sessionId: string, inputTokens: number, outputTokens: number, costUsd: number) => ({ sessionId, inputTokens, outputTokens, costUsd });
      return {
        act: async (store) => {
          expect(await store.spendOf("alice", "")).toEqual({ inputTokens: 0, outputTokens: 0, costUsd: 0 });
          await store.save(recordWith("spender", messages(1)), []);
          await store.addSpend([row("alice", "2026-10-31", 10, 1, 0.25), row("bob", "2026-11-01", 5, 5, 1)]);
          // The same owner and day twice in one call, and again later: all of it counts.
          await store.addSpend([row("alice", "2026-11-01", 100, 10, 0.5), row("alice", "2026-11-01", 1, 1, 0.125)]);
          await Promise.all([1, 2, 3, 4].map(() => store.addSpend([row("alice", "2026-11-02", 1, 0, 0.0625)])));
          await store.addSpend([row(TRICKY_OWNER, "2026-11-02", 7, 7, 7)]);
          await store.addSpend([]);
          await store.delete("spender");
          // Marks go with rows, and only rise: a running total written late does not lower one.
          await store.addSpend([row("carol", "2026-11-03", 3, 1, 0.5)], [mark("s1", 3, 1, 0.5), mark("s2", 9, 9, 9)]);
          await store.addSpend([], [mark("s1", 10, 2, 1.5)]);
          await store.addSpend([], [mark("s1", 4, 1, 0.75), mark("s1", 2, 2, 0.25)]);
        },
        check: async (store) => {
          expect(await store.spendOf("alice", "")).toEqual({ inputTokens: 115, outputTokens: 12, costUsd: 1.125 });
          expect(await store.spendOf("alice", "2026-11-01")).toEqual({ inputTokens: 105, outputTokens: 11, costUsd: 0.875 });
          expect(await store.spendOf("alice", "2026-11-02")).toEqual({ inputTokens: 4, outputTokens: 0, costUsd: 0.25 });
          expect(await store.spendOf("alice", "2026-12-01")).toEqual({ inputTokens: 0, outputTokens: 0, costUsd: 0 });
          expect(await store.spendOf("bob", "")).toEqual({ inputTokens: 5, outputTokens: 5, costUsd: 1 });
          expect(await store.spendOf(TRICKY_OWNER, "2026-11-01")).toEqual({ inputTokens: 7, outputTokens: 7, costUsd: 7 });
          expect(await store.spendOf("nobody", "")).toEqual({ inputTokens: 0, outputTokens: 0, costUsd: 0 });
          expect(await store.spendOf("carol", "")).toEqual({ inputTokens: 3, outputTokens: 1, costUsd: 0.5 });
          const marks = await store.marksOf(["s1", "s2", "s3"]);
          expect([...marks.entries()].sort()).toEqual([
            ["s1", mark("s1", 10, 2, 1.5)],
            ["s2", mark("s2", 9, 9, 9)],
          ]);
          expect(await store.marksOf([])).toEqual(new Map());
        },
      };
    },
  ],
];

/** An owner name with quotes, a backslash and characters outside ASCII (owners never hold control characters). */
const TRICKY_OWNER = 'o\'wn"er \\ ünï 🎉';

// ---- The suite ----

/** `reopens`: whether the factory's stores can be reopened; the restart cases are left out otherwise. */
export function describeStoreContract(name: string, factory: () => Promise<StoreUnderTest>, reopens = true): void {
  describe(`SessionStore contract: ${name}`, () => {
    let sut: StoreUnderTest;

    beforeEach(async () => {
      sut = await factory();
    });

    afterEach(async () => {
      await sut.cleanup();
    });

    const reopen = (retention?: EventRetention): Promise<SessionStore> => {
      if (!sut.reopen) throw new Error(`${name}: the factory says its stores reopen, but gives no reopen`);
      return sut.reopen(retention);
    };

    for (const [title, make] of scenarios) {
      it(title, async () => {
        const scenario = make();
        const store = await sut.open(scenario.retention);
        await scenario.act(store);
        await scenario.check(store);
      });
    }

    it("close() keeps everything acknowledged, and the store works again after it", async () => {
      const store = await sut.open({ maxEvents: 4, maxBytes: 1_000_000 });
      await store.save(recordWith("a", messages(3), 3), events("a", 1, 3));
      await store.save(richRecord("b"), []);
      await store.save(recordWith("c", messages(1)), events("c", 1, 1));
      await store.delete("c");
      await store.close?.();

      await expectRecords(store, [recordWith("a", messages(3), 3), richRecord("b")]);
      await expectEvents(store, "a", events("a", 1, 3), 1);
      await store.save(recordWith("a", messages(5), 6), events("a", 2, 6));
      await store.save(recordWith("c", messages(2), 2), []);
      await expectRecords(store, [recordWith("a", messages(5), 6), richRecord("b"), recordWith("c", messages(2), 2)]);
      await expectEvents(store, "a", events("a", 3, 6), 3);
      await store.close?.();
    });

    if (!reopens) return;
    describe("after a reopen (a restart over the same storage), everything acknowledged is there", () => {
      for (const [title, make] of scenarios) {
        it(title, async () => {
          const scenario = make();
          const store = await sut.open(scenario.retention);
          await scenario.act(store);
          await scenario.check(await reopen(scenario.retention));
        });
      }

      it("after an explicit close(): records, messages, events and oldest", async () => {
        const retention = { maxEvents: 3, maxBytes: 1_000_000 };
        const store = await sut.open(retention);
        await store.save(richRecord("a"), events("a", 1, 5));
        await store.save(recordWith("b", messages(4), 4), events("b", 1, 2));
        await store.save(recordWith("b", messages(2), 4), []);
        await store.save(recordWith("c", messages(1)), events("c", 1, 1));
        await store.delete("c");
        await store.close?.();
        const again = await reopen(retention);
        await expectRecords(again, [richRecord("a"), recordWith("b", messages(2), 4)]);
        await expectEvents(again, "a", events("a", 3, 5), 3);
        await expectEvents(again, "b", events("b", 1, 2), 1);
        expect(await again.readEvents("c", 0, 100)).toEqual({ events: [], oldest: 0 });
      });

      it("later saves continue from what was stored: messages append, rewrites replace, re-sent events are ignored", async () => {
        const retention = { maxEvents: 5, maxBytes: 1_000_000 };
        const store = await sut.open(retention);
        await store.save(recordWith("append", messages(3), 3), events("append", 1, 3));
        await store.save(recordWith("rewrite", messages(4), 4), events("rewrite", 1, 4));
        await store.save(richRecord("fields"), []);

        const second = await reopen(retention);
        await expectRecords(second, [recordWith("append", messages(3), 3), recordWith("rewrite", messages(4), 4), richRecord("fields")]);
        await second.save(recordWith("append", messages(5), 7), [...events("append", 2, 3, "re-sent"), ...events("append", 4, 7)]);
        await second.save(recordWith("rewrite", [message(0), otherMessage(1)], 5), events("rewrite", 1, 5, "re-sent"));
        await second.save(sessionRecord("fields", 42), []);
        const expected = [recordWith("append", messages(5), 7), recordWith("rewrite", [message(0), otherMessage(1)], 5), sessionRecord("fields", 42)];
        await expectRecords(second, expected);
        await expectEvents(second, "append", events("append", 3, 7), 3);
        await expectEvents(second, "rewrite", [...events("rewrite", 1, 4), event("rewrite", 5, "re-sent")], 1);

        const third = await reopen(retention);
        await expectRecords(third, expected);
        await expectEvents(third, "append", events("append", 3, 7), 3);
        await expectEvents(third, "rewrite", [...events("rewrite", 1, 4), event("rewrite", 5, "re-sent")], 1);
      });
    });
  });
}
