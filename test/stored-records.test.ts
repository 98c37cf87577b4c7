import { cp, readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { Decision, MessageKind, Role, SessionState, TimeoutAction, type Message, type ModelConfig, type SubscribeResponse, type ToolCall, type ToolResult } from "../src/gen/agentd/v1/runtime.js";
import { collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, type TestServer } from "./helpers/harness.js";

/**
 * Session records written by agentd at commit 2af17c0 (see fixtures/session-records/v1/README.md).
 * They are what old data directories contain: every release must restore them exactly. The expected
 * values below are spelled out from the files, so a loader that drops or alters anything fails here.
 */

afterAll(removeTempDirs);

const FIXTURES = fileURLToPath(new URL("./fixtures/session-records/v1/", import.meta.url));
/** The data dir of the run that wrote the files; it no longer exists, but the paths must come back as stored. */
const WORKSPACES = "/tmp/agentd-v1-data-nxHlKT/workspaces";
const DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Use the tools you are given when they help.";

const ID = {
  toolTurn: "e8f57b01-d95d-4f82-b6ef-7d140196cbf9",
  unicode: "7097e027-4247-4331-bb8c-fd577116d07d",
  paused: "d09d405b-528b-4a2c-9590-dc8ef09c20bd",
  parent: "bcea0774-ac3c-4173-bf6b-4c79d6628dde",
  child: "3aa9e7ad-1575-4ee8-acd1-c2f0c4921c5e",
  openai: "4edf9137-e733-4637-8303-c1882969ade1",
  bare: "ba6881ba-d248-4b0a-9ec1-217aa01d24ca",
  running: "3e94a925-69b7-4858-a72b-21663c03a13a",
  cancelled: "c492101e-f3e2-46b9-852e-bdd1023f8304",
  failed: "003780d3-a2d9-4532-93ef-bb1a85a4ab05",
} as const;

/** In creation order, which is ListSessions' order. */
const ALL_IDS = [ID.toolTurn, ID.unicode, ID.paused, ID.parent, ID.child, ID.openai, ID.bare, ID.running, ID.cancelled, ID.failed];

const scriptModel = (scriptJson: string): ModelConfig => ({
  provider: "scripted",
  model: "script",
  baseUrl: "",
  apiKeyEnv: "",
  scriptPath: "",
  scriptJson,
});

type ExpectedMessage = { role: Role; text: string; toolCalls?: ToolCall[]; toolResult?: ToolResult };
const user = (text: string): ExpectedMessage => ({ role: Role.ROLE_USER, text });
const assistant = (text: string, toolCalls: ToolCall[] = []): ExpectedMessage => ({ role: Role.ROLE_ASSISTANT, text, toolCalls });
const tool = (toolResult: ToolResult): ExpectedMessage => ({ role: Role.ROLE_TOOL, text: "", toolResult });

interface Expected {
  owner: string;
  parentId: string;
  state: SessionState;
  labels: Record<string, string>;
  model: ModelConfig | undefined;
  systemPrompt: string;
  limits: { maxToolRounds: number; toolTimeoutMs: number };
  usage: { inputTokens: number; outputTokens: number };
  lastSequence: number;
  workspaceOf: string;
  createdAt: string;
  /** The messages in the file (the running one gets one more on restore, checked separately). */
  messages: ExpectedMessage[];
}

const DEFAULT_LIMITS = { maxToolRounds: 50, toolTimeoutMs: 120_000 };
const HELPER_SCRIPT = '{"steps":[{"text":"I will ask a helper.","usage":{"inputTokens":15,"outputTokens":6}}],"repeat":true}';

const EXPECTED: Record<string, Expected> = {
  [ID.toolTurn]: {
    owner: "alice",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: { project: "fixtures", kind: "tool-turn" },
    model: scriptModel(
      '{"steps":[{"text":"I will write the notes file.","toolCalls":[{"id":"call_write_1","name":"write_file","arguments":{"path":"notes/todo.txt","content":"buy milk\\nwater plants\\n"}}],"usage":{"inputTokens":40,"outputTokens":12}},' +
        '{"text":"Now let me read it back.","toolCalls":[{"name":"read_file","arguments":{"path":"notes/todo.txt"}},{"name":"list_dir","arguments":{"path":"notes"}}],"usage":{"inputTokens":61,"outputTokens":9}},' +
        '{"text":"Your todo list has 2 items: buy milk, water plants.","usage":{"inputTokens":90,"outputTokens":14}}],"repeat":false}',
    ),
    systemPrompt: "You keep notes in the workspace.",
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 191, outputTokens: 35 },
    lastSequence: 25,
    workspaceOf: ID.toolTurn,
    createdAt: "2026-11-25T18:56:00.320Z",
    messages: [
      user("Write my todo list: buy milk, water plants."),
      assistant("I will write the notes file.", [
        { id: "call_write_1", name: "write_file", argumentsJson: '{"path":"notes/todo.txt","content":"buy milk\\nwater plants\\n"}' },
      ]),
      tool({ callId: "call_write_1", name: "write_file", output: "wrote 22 bytes to notes/todo.txt", isError: false }),
      assistant("Now let me read it back.", [
        { id: "scripted_call_1", name: "read_file", argumentsJson: '{"path":"notes/todo.txt"}' },
        { id: "scripted_call_2", name: "list_dir", argumentsJson: '{"path":"notes"}' },
      ]),
      tool({ callId: "scripted_call_1", name: "read_file", output: "buy milk\nwater plants\n", isError: false }),
      tool({ callId: "scripted_call_2", name: "list_dir", output: "todo.txt", isError: false }),
      assistant("Your todo list has 2 items: buy milk, water plants."),
    ],
  },
  [ID.unicode]: {
    owner: "bob",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: { langue: "français", humeur: "\u{1F600}" },
    model: scriptModel(
      '{"steps":[{"text":"Très bien, merci ! \u{1F389} Ça roule.","chunkSize":3,"usage":{"inputTokens":21,"outputTokens":9}},' +
        '{"text":"Voilà : « café », naïve, 日本語, \u{1F469}\u200D\u{1F4BB} — fin.","chunkSize":2,"usage":{"inputTokens":34,"outputTokens":15}}],"repeat":false}',
    ),
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 55, outputTokens: 24 },
    lastSequence: 36,
    workspaceOf: ID.unicode,
    createdAt: "2026-11-25T18:56:00.339Z",
    messages: [
      user("Bonjour, ça va ? \u{1F600}"),
      assistant("Très bien, merci ! \u{1F389} Ça roule."),
      user("Écris quelque chose avec des accents \u270D\uFE0F"),
      assistant("Voilà : « café », naïve, 日本語, \u{1F469}\u200D\u{1F4BB} — fin."),
    ],
  },
  [ID.paused]: {
    owner: "carol",
    parentId: "",
    state: SessionState.SESSION_STATE_PAUSED,
    labels: { state: "paused" },
    model: scriptModel('{"steps":[{"text":"Ready when you are.","usage":{"inputTokens":8,"outputTokens":5}}],"repeat":false}'),
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 8, outputTokens: 5 },
    lastSequence: 7,
    workspaceOf: ID.paused,
    createdAt: "2026-11-25T18:56:00.354Z",
    messages: [user("Are you ready?"), assistant("Ready when you are.")],
  },
  [ID.parent]: {
    owner: "dave",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: { role: "parent" },
    model: scriptModel(HELPER_SCRIPT),
    systemPrompt: "You coordinate helpers.",
    limits: { maxToolRounds: 5, toolTimeoutMs: 120_000 },
    usage: { inputTokens: 15, outputTokens: 6 },
    lastSequence: 6,
    workspaceOf: ID.parent,
    createdAt: "2026-11-25T18:56:00.360Z",
    messages: [user("Plan the work."), assistant("I will ask a helper.")],
  },
  [ID.child]: {
    owner: "dave",
    parentId: ID.parent,
    state: SessionState.SESSION_STATE_IDLE,
    labels: { role: "child" },
    model: scriptModel(HELPER_SCRIPT),
    systemPrompt: "You are a helper.",
    limits: { maxToolRounds: 5, toolTimeoutMs: 120_000 },
    usage: { inputTokens: 15, outputTokens: 6 },
    lastSequence: 6,
    // A child shares its parent's workspace.
    workspaceOf: ID.parent,
    createdAt: "2026-11-25T18:56:00.365Z",
    messages: [user("Do step one."), assistant("I will ask a helper.")],
  },
  [ID.openai]: {
    owner: "erin",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: { backend: "ollama" },
    model: {
      provider: "openai",
      model: "llama3.1",
      baseUrl: "http://127.0.0.1:11434/v1",
      apiKeyEnv: "AGENTD_FIXTURE_OPENAI_KEY",
      temperature: 0.25,
      maxOutputTokens: 256,
      scriptPath: "",
      scriptJson: "",
    },
    systemPrompt: "You answer in one sentence.",
    limits: { maxToolRounds: 7, toolTimeoutMs: 3000 },
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence: 0,
    workspaceOf: ID.openai,
    createdAt: "2026-11-25T18:56:00.370Z",
    messages: [],
  },
  [ID.bare]: {
    owner: "default",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: {},
    model: undefined,
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence: 0,
    workspaceOf: ID.bare,
    createdAt: "2026-11-25T18:56:00.374Z",
    messages: [],
  },
  [ID.running]: {
    owner: "frank",
    parentId: "",
    // Stored as "running": the turn did not survive, so it comes back idle.
    state: SessionState.SESSION_STATE_IDLE,
    labels: { capture: "mid-turn" },
    model: scriptModel(
      '{"steps":[{"text":"Scanning the tree.","toolCalls":[{"id":"call_scan_tree","name":"list_dir","arguments":{"path":"tree","recursive":true}}],"usage":{"inputTokens":30,"outputTokens":11}},' +
        '{"text":"The tree is big.","usage":{"inputTokens":700,"outputTokens":6}}],"repeat":false}',
    ),
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 30, outputTokens: 11 },
    lastSequence: 6,
    workspaceOf: ID.running,
    createdAt: "2026-11-25T18:56:00.375Z",
    messages: [
      user("How big is the tree?"),
      assistant("Scanning the tree.", [{ id: "call_scan_tree", name: "list_dir", argumentsJson: '{"path":"tree","recursive":true}' }]),
    ],
  },
  [ID.cancelled]: {
    owner: "grace",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: { outcome: "cancelled" },
    model: scriptModel(
      '{"steps":[{"text":"This is a long answer that streams slowly, word by word, and never gets to the end.","chunkSize":5,"delayMs":40}],"repeat":false}',
    ),
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence: 5,
    workspaceOf: ID.cancelled,
    createdAt: "2026-11-25T18:56:00.607Z",
    messages: [user("Tell me a long story."), assistant("This is a long ")],
  },
  [ID.failed]: {
    owner: "heidi",
    parentId: "",
    state: SessionState.SESSION_STATE_IDLE,
    labels: { outcome: "failed" },
    model: scriptModel(
      '{"steps":[{"text":"Let me check the weather service.","error":{"code":"UNAVAILABLE","message":"simulated outage"}}],"repeat":false}',
    ),
    systemPrompt: DEFAULT_SYSTEM_PROMPT,
    limits: DEFAULT_LIMITS,
    usage: { inputTokens: 0, outputTokens: 0 },
    lastSequence: 7,
    workspaceOf: ID.failed,
    createdAt: "2026-11-25T18:56:00.737Z",
    messages: [user("What is the weather?"), assistant("Let me check the weather service.")],
  },
};

/** The message ids, times and turn ids as stored, read from the file itself. */
async function storedMessages(id: string): Promise<Array<{ id: string; createdAt: string; turnId: string }>> {
  const record = JSON.parse(await readFile(path.join(FIXTURES, `${id}.json`), "utf8")) as { messages: Array<{ id: string; createdAt: string; turnId: string }> };
  return record.messages;
}

/** A real server on a fresh data dir holding a copy of every v1 file. */
async function restoredServer(): Promise<TestServer> {
  const dataDir = await makeTempDir("agentd-v1-records-");
  await cp(FIXTURES, path.join(dataDir, "sessions"), { recursive: true, filter: (source) => !source.endsWith("README.md") });
  return startTestServer({ dataDir });
}

async function withRestoredServer(body: (server: TestServer) => Promise<void>): Promise<void> {
  const server = await restoredServer();
  try {
    await body(server);
  } finally {
    await server.stop();
  }
}

async function allMessages(server: TestServer, sessionId: string): Promise<Message[]> {
  return (await server.client.getMessages({ sessionId, pageSize: 1000 })).messages;
}

const BUILT_IN_PERMISSIONS = {
  deny: [],
  ask: [],
  allow: ["read_file", "list_dir", "glob", "grep", "skill", "task"],
  defaultDecision: Decision.DECISION_ASK,
};
const BUILT_IN_CONFIRMATION = { enabled: true, timeoutMs: 30000, timeoutAction: TimeoutAction.TIMEOUT_ACTION_REJECT };

describe("version-1 session records", () => {
  it("the fixture folder holds exactly the ten frozen records", async () => {
    const files = (await readdir(FIXTURES)).filter((name) => name.endsWith(".json"));
    expect(files.sort()).toEqual(ALL_IDS.map((id) => `${id}.json`).sort());
  });

  it("every session comes back with its owner, labels, links, state, config, usage and sequence", () =>
    withRestoredServer(async ({ client }) => {
      for (const id of ALL_IDS) {
        const want = EXPECTED[id]!;
        const { session } = await client.getSession({ sessionId: id });
        const messageCount = want.messages.length + (id === ID.running ? 1 : 0);
        expect(session, id).toEqual({
          id,
          owner: want.owner,
          parentId: want.parentId,
          state: want.state,
          // Records from before permission policies get the built-in ones; from before compaction, its defaults.
          config: {
            model: want.model,
            systemPrompt: want.systemPrompt,
            // Records from before budgets have none.
            limits: { ...want.limits, budgetUsd: 0 },
            permissions: BUILT_IN_PERMISSIONS,
            confirmation: BUILT_IN_CONFIRMATION,
            tools: { allow: [] },
            autoCompact: true,
            autoCompactThreshold: 0.8,
          },
          createTime: new Date(want.createdAt),
          updateTime: expect.any(Date),
          // Records from before prices cost nothing; GetSession adds the tree's usage.
          usage: { ...want.usage, totalTokens: want.usage.inputTokens + want.usage.outputTokens, costUsd: 0 },
          treeUsage: expect.objectContaining({ costUsd: 0 }),
          // The owners' ledger starts with this version: spending before it is not in it.
          ownerUsage: expect.objectContaining({ owner: want.owner, budgetUsd: 0, period: "month" }),
          messageCount,
          // The turn that was running when it was stored is said to have ended: one event more.
          lastSequence: want.lastSequence + (id === ID.running ? 1 : 0),
          workspace: `${WORKSPACES}/${want.workspaceOf}`,
          ephemeral: false,
          labels: want.labels,
          turnActive: false,
          activeTurnId: "",
          persistenceError: "",
          agent: "",
        });
      }
    }));

  it("every message comes back with its role, text, tool calls, tool result, id, time and turn", () =>
    withRestoredServer(async (server) => {
      for (const id of ALL_IDS) {
        const want = EXPECTED[id]!.messages;
        const stored = await storedMessages(id);
        expect(stored).toHaveLength(want.length);
        const messages = await allMessages(server, id);
        expect(messages.slice(0, want.length), id).toEqual(
          want.map((message, i) => ({
            id: stored[i]!.id,
            role: message.role,
            text: message.text,
            toolCalls: message.toolCalls ?? [],
            toolResult: message.toolResult,
            createTime: new Date(stored[i]!.createdAt),
            turnId: stored[i]!.turnId,
            // Records from before compaction: the whole transcript is the model's context.
            kind: MessageKind.MESSAGE_KIND_UNSPECIFIED,
            inContext: true,
            contextStart: false,
            rewound: false,
          })),
        );
        if (id !== ID.running) expect(messages, id).toHaveLength(want.length);
      }
    }));

  it("a session stored mid-turn comes back idle with its unanswered tool call answered as interrupted", () =>
    withRestoredServer(async (server) => {
      const { session } = await server.client.getSession({ sessionId: ID.running });
      expect(session!.state).toBe(SessionState.SESSION_STATE_IDLE);
      expect(session!.turnActive).toBe(false);
      // Its followers learn that the turn died with the server.
      expect(session!.lastSequence).toBe(7);
      const replay = server.client.subscribe({ sessionId: ID.running, afterSequence: 6 });
      for await (const message of replay as AsyncIterable<SubscribeResponse>) {
        expect(message.event!.payload).toEqual({ $case: "cancelled", cancelled: { reason: "server_restarted" } });
        expect(message.event!.sequence).toBe(7);
        break;
      }
      replay.cancel();

      const messages = await allMessages(server, ID.running);
      const stored = await storedMessages(ID.running);
      expect(messages).toHaveLength(3);
      expect(messages[2]).toEqual({
        id: expect.any(String),
        role: Role.ROLE_TOOL,
        text: "",
        toolCalls: [],
        toolResult: {
          callId: "call_scan_tree",
          name: "list_dir",
          output: expect.stringMatching(/interrupted/),
          isError: true,
        },
        createTime: expect.any(Date),
        turnId: stored[1]!.turnId,
        kind: MessageKind.MESSAGE_KIND_UNSPECIFIED,
        inContext: true,
        contextStart: false,
        rewound: false,
      });
      expect(stored.map((m) => m.id)).not.toContain(messages[2]!.id);
    }));

  it("ListSessions and ListChildSessions see the stored sessions and the parent/child link", () =>
    withRestoredServer(async ({ client }) => {
      const { sessions, nextPageToken } = await client.listSessions({ pageSize: 100 });
      expect(sessions.map((s) => s.id)).toEqual(ALL_IDS);
      expect(nextPageToken).toBe("");
      expect(sessions.map((s) => s.owner)).toEqual(["alice", "bob", "carol", "dave", "dave", "erin", "default", "frank", "grace", "heidi"]);

      const dave = await client.listSessions({ owner: "dave" });
      expect(dave.sessions.map((s) => [s.id, s.parentId, s.labels])).toEqual([
        [ID.parent, "", { role: "parent" }],
        [ID.child, ID.parent, { role: "child" }],
      ]);
      expect((await client.listChildSessions({ sessionId: ID.parent })).sessions.map((s) => s.id)).toEqual([ID.child]);
      expect((await client.listChildSessions({ sessionId: ID.child })).sessions).toEqual([]);
      for (const id of ALL_IDS.filter((id) => id !== ID.parent)) {
        expect((await client.listChildSessions({ sessionId: id })).sessions, id).toEqual([]);
      }
    }));

  it("the paused session refuses a turn until Resume", () =>
    withRestoredServer(async ({ client }) => {
      const refused = await grpcError(client.generate({ sessionId: ID.paused, prompt: "Now?" }));
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      const { session } = await client.resume({ sessionId: ID.paused });
      expect(session!.state).toBe(SessionState.SESSION_STATE_IDLE);
      expect(session!.lastSequence).toBeGreaterThan(7);
    }));

  it("a new turn continues the stored sequence and history", () =>
    withRestoredServer(async (server) => {
      const { client } = server;
      await client.configureSession({
        sessionId: ID.unicode,
        config: { model: scripted([{ text: "Encore une fois, volontiers !", usage: { inputTokens: 3, outputTokens: 4 } }]) },
      });
      const response = await client.generate({ sessionId: ID.unicode, prompt: "Encore ?" });
      expect(response.result!.text).toBe("Encore une fois, volontiers !");
      expect(response.sequence).toBeGreaterThan(36);
      const { session } = await client.getSession({ sessionId: ID.unicode });
      expect(session!.lastSequence).toBe(response.sequence);
      expect(session!.usage).toEqual({ inputTokens: 58, outputTokens: 28, totalTokens: 86, costUsd: 0 });
      expect((await allMessages(server, ID.unicode)).map((m) => m.text)).toEqual([
        ...EXPECTED[ID.unicode]!.messages.map((m) => m.text),
        "Encore ?",
        "Encore une fois, volontiers !",
      ]);

      // The repaired session takes a new turn too: its history (with the interrupted result) is valid.
      await client.configureSession({ sessionId: ID.running, config: { model: scripted([{ text: "Starting over." }]) } });
      const events = await collect(client.streamGenerate({ sessionId: ID.running, prompt: "Try again." }));
      expect(events.at(-1)!.payload?.$case).toBe("turnCompleted");
      const sequences = events.map((e) => e.sequence);
      expect(sequences[0]).toBeGreaterThan(6);
      for (let i = 1; i < sequences.length; i++) expect(sequences[i]).toBeGreaterThan(sequences[i - 1]!);
      expect((await allMessages(server, ID.running)).map((m) => m.text)).toEqual([
        "How big is the tree?",
        "Scanning the tree.",
        "",
        "Try again.",
        "Starting over.",
      ]);
    }));
});
