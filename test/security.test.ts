import { status } from "@grpc/grpc-js";
import { mkdir, readFile, readdir, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import { collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, type TestServer } from "./helpers/harness.js";
import { FakeServer, sendSse } from "./llm/fake-server.js";
import { healthCheck } from "./helpers/standard-clients.js";
import { storedText } from "./helpers/records.js";

/**
 * The attacks of the security issue, each over a real port: a second client with its own token must
 * neither see nor touch the first client's sessions, files or keys.
 */

const tokens = { alice: newToken(), bob: newToken(), root: newToken() };
let t: TestServer;
let alice: AgentdClient;
let bob: AgentdClient;
let root: AgentdClient;
let anonymous: AgentdClient;
let provider: FakeServer;

beforeAll(async () => {
  const dir = await makeTempDir("agentd-security-");
  const tokensFile = path.join(dir, "tokens.json");
  await writeFile(
    tokensFile,
    JSON.stringify({
      tokens: [
        { sha256: hashToken(tokens.alice), owner: "alice", role: "user" },
        { sha256: hashToken(tokens.bob), owner: "bob", role: "user" },
        { sha256: hashToken(tokens.root), owner: "ops", role: "admin" },
      ],
    }),
  );
  provider = new FakeServer();
  await provider.start();
  t = await startTestServer({
    dataDir: path.join(dir, "data"),
    config: {
      auth: { tokensFile },
      models: { allowedBaseUrls: [`${provider.url}/v1`], allowedApiKeyEnvs: ["OPENAI_API_KEY"] },
      limits: { maxConcurrentTurnsPerOwner: 1 },
    },
  });
  alice = new AgentdClient(t.server.address, { token: tokens.alice });
  bob = new AgentdClient(t.server.address, { token: tokens.bob });
  root = new AgentdClient(t.server.address, { token: tokens.root });
  anonymous = t.client;
});

afterAll(async () => {
  for (const client of [alice, bob, root]) client.close();
  await t.stop();
  await provider.stop();
  await removeTempDirs();
});

const codeOf = async (promise: Promise<unknown>) => (await grpcError(promise)).code;

describe("authentication", () => {
  it("refuses calls without a token, or with a wrong one, as UNAUTHENTICATED", async () => {
    const none = await grpcError(anonymous.listSessions({}));
    expect(none.code).toBe(status.UNAUTHENTICATED);
    expect(none.details).toContain("authorization: Bearer");
    const wrong = new AgentdClient(t.server.address, { token: newToken() });
    expect(await codeOf(wrong.createSession({}))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(collect(wrong.streamGenerate({ sessionId: "x", prompt: "hi" })))).toBe(status.UNAUTHENTICATED);
    expect(await codeOf(collect(wrong.watchTurn({ sessionId: "x" })))).toBe(status.UNAUTHENTICATED);
    wrong.close();
  });

  it("keeps health open without a token", async () => {
    expect(await healthCheck(t.server.address, "agentd.v1.AgentRuntime")).toBe("SERVING");
  });
});

describe("ownership", () => {
  it("a second client can neither see nor touch the first client's sessions: every RPC says NOT_FOUND", async () => {
    const { session } = await alice.createSession({ labels: { secret: "yes" }, config: { model: scripted([{ text: "hi" }], true) } });
    const id = session!.id;
    expect(session!.owner).toBe("alice");

    const notFound = [
      () => bob.getSession({ sessionId: id }),
      () => bob.getMessages({ sessionId: id }),
      () => bob.configureSession({ sessionId: id, config: { systemPrompt: "pwned" } }),
      () => bob.createChildSession({ parentId: id }),
      () => bob.listChildSessions({ sessionId: id }),
      () => bob.generate({ sessionId: id, prompt: "hi" }),
      () => collect(bob.streamGenerate({ sessionId: id, prompt: "hi" })),
      () => bob.cancel({ sessionId: id }),
      () => bob.pause({ sessionId: id }),
      () => bob.resume({ sessionId: id }),
      () => bob.destroySession({ sessionId: id }),
    ];
    for (const call of notFound) {
      const error = await grpcError(call());
      expect(error.code).toBe(status.NOT_FOUND);
      // The same words as for an id that does not exist.
      expect(error.details).toBe(`session ${id} not found`);
    }
    expect((await bob.listSessions({})).sessions.map((s) => s.id)).not.toContain(id);
    expect(await codeOf(bob.listSessions({ owner: "alice" }))).toBe(status.PERMISSION_DENIED);
    expect(await codeOf(bob.createSession({ owner: "alice" }))).toBe(status.PERMISSION_DENIED);

    // Nothing changed for alice.
    const after = (await alice.getSession({ sessionId: id })).session!;
    expect(after.config!.systemPrompt).not.toBe("pwned");
    expect(after.messageCount).toBe(0);
    expect((await alice.listSessions({})).sessions.map((s) => s.id)).toContain(id);
  });

  it("an admin sees every owner's sessions and may create them for an owner; children belong to the parent's owner", async () => {
    const { session } = await root.createSession({ owner: "alice" });
    expect(session!.owner).toBe("alice");
    const { session: child } = await alice.createChildSession({ parentId: session!.id });
    expect(child!.owner).toBe("alice");
    expect((await root.getSession({ sessionId: child!.id })).session!.owner).toBe("alice");
    const owners = new Set((await root.listSessions({ pageSize: 1000 })).sessions.map((s) => s.owner));
    expect(owners.has("alice")).toBe(true);
    expect((await root.listSessions({ owner: "bob" })).sessions.every((s) => s.owner === "bob")).toBe(true);
  });

  it("limits the turns one owner runs at once", async () => {
    const slow = scripted([{ text: "slow", delayMs: 2_000 }], true);
    const one = (await bob.createSession({ config: { model: slow } })).session!.id;
    const two = (await bob.createSession({ config: { model: slow } })).session!.id;
    const running = collect(bob.streamGenerate({ sessionId: one, prompt: "go" })).catch(() => []);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const refused = await grpcError(bob.generate({ sessionId: two, prompt: "go" }));
    expect(refused.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(refused.details).toContain("limits.maxConcurrentTurnsPerOwner = 1");
    // Another owner is not held up.
    const other = (await alice.createSession({ config: { model: scripted([{ text: "ok" }]) } })).session!.id;
    expect((await alice.generate({ sessionId: other, prompt: "go" })).result!.text).toBe("ok");
    await bob.cancel({ sessionId: one });
    await running;
  });
});

describe("the sandbox", () => {
  const denied = async (promise: Promise<unknown>) => {
    const error = await grpcError(promise);
    expect(error.code).toBe(status.PERMISSION_DENIED);
    expect(error.details).toContain("workspace");
    return error;
  };

  it("refuses workspaces outside the allowed roots, and creates no directory for them", async () => {
    const root = path.join(t.dataDir, "workspaces");
    const outside = path.join(await makeTempDir("agentd-outside-"), "new-dir");
    await denied(alice.createSession({ workspace: "/" }));
    await denied(alice.createSession({ workspace: "/etc" }));
    await denied(alice.createSession({ workspace: "/etc/passwd" }));
    await denied(alice.createSession({ workspace: `${root}/../../../..` }));
    await denied(alice.createSession({ workspace: t.dataDir }));
    await denied(alice.createSession({ workspace: path.join(t.dataDir, "sessions") }));
    await denied(alice.createSession({ workspace: root }));
    await denied(alice.createSession({ workspace: outside }));
    await expect(readdir(outside)).rejects.toThrow();
    // A symlink inside a root that leads out of it is followed before the check.
    await symlink("/etc", path.join(root, "escape"));
    await denied(alice.createSession({ workspace: path.join(root, "escape") }));
    await denied(alice.createSession({ workspace: path.join(root, "escape", "sub") }));

    // Paths inside a root that cannot be a directory are the client's mistake, said plainly.
    await writeFile(path.join(root, "a-file"), "x");
    await symlink(path.join(root, "nowhere"), path.join(root, "dangling"));
    for (const workspace of [path.join(root, "a-file"), path.join(root, "a-file", "sub"), path.join(root, "dangling"), path.join(root, "n".repeat(300))]) {
      expect((await grpcError(alice.createSession({ workspace }))).code, workspace).toBe(status.INVALID_ARGUMENT);
    }
    const bad = await grpcError(alice.createSession({ workspace: "/tmp/a\u0000b" }));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect((await grpcError(alice.createSession({ workspace: "relative/dir" }))).code).toBe(status.INVALID_ARGUMENT);
  });

  it("accepts a workspace inside a root, and keeps a child inside its parent's workspace or a root", async () => {
    const inside = path.join(t.dataDir, "workspaces", "project-a");
    const { session } = await alice.createSession({ workspace: inside });
    expect(session!.workspace).toBe(inside);
    const { session: nested } = await alice.createChildSession({ parentId: session!.id, workspace: path.join(inside, "sub") });
    expect(nested!.workspace).toBe(path.join(inside, "sub"));
    await denied(alice.createChildSession({ parentId: session!.id, workspace: "/etc" }));
    await denied(alice.createChildSession({ parentId: session!.id, workspace: `${inside}/../../..` }));
  });

  it("keeps owners out of each other's workspaces", async () => {
    const root = path.join(t.dataDir, "workspaces");
    const shared = path.join(root, "team-x");
    const { session } = await alice.createSession({ workspace: shared });
    const { session: own } = await alice.createSession({});
    for (const workspace of [shared, path.join(shared, "sub"), own!.workspace]) {
      const error = await denied(bob.createSession({ workspace }));
      expect(error.details).toContain("another owner");
    }
    // The same owner may share, and a workspace that holds another owner's is refused too.
    expect((await alice.createSession({ workspace: path.join(shared, "sub") })).session!.workspace).toBe(path.join(shared, "sub"));
    await alice.destroySession({ sessionId: session!.id });
    await denied(bob.createSession({ workspace: shared }));
  });

  it("reads no script outside the scripts folder and quotes no file", async () => {
    for (const scriptPath of ["/etc/shadow", "/etc/passwd", "../../etc/passwd", "/no/such/file"]) {
      const error = await grpcError(alice.createSession({ config: { model: { provider: "scripted", model: "s", scriptPath } } }));
      expect(error.code).toBe(status.PERMISSION_DENIED);
      expect(error.details).not.toContain("root:");
      expect(error.details).toContain("scripts folder");
    }
    // Inside the folder, a script is found by name.
    const scripts = path.join(t.dataDir, "scripts");
    await mkdir(scripts, { recursive: true });
    await writeFile(path.join(scripts, "hello.json"), JSON.stringify({ steps: [{ text: "from the folder" }] }));
    const { session } = await alice.createSession({ config: { model: { provider: "scripted", model: "s", scriptPath: "hello.json" } } });
    expect((await alice.generate({ sessionId: session!.id, prompt: "hi" })).result!.text).toBe("from the folder");
  });
});

describe("model endpoints and keys", () => {
  it("will not send a key to an endpoint the operator did not allow, nor lend other variables", async () => {
    const { session } = await alice.createSession({ config: { model: scripted([{ text: "x" }]) } });
    // The victim's session cannot be repointed by another owner (not found), nor by its owner to an attacker.
    const attacker = { provider: "openai", model: "gpt-4o-mini", baseUrl: "http://attacker.example/v1" };
    expect(await codeOf(bob.configureSession({ sessionId: session!.id, config: { model: attacker } }))).toBe(status.NOT_FOUND);
    const repoint = await grpcError(alice.configureSession({ sessionId: session!.id, config: { model: attacker } }));
    expect(repoint.code).toBe(status.PERMISSION_DENIED);
    expect(repoint.details).toContain("models.allowedBaseUrls");
    const env = await grpcError(
      alice.createSession({ config: { model: { provider: "openai", model: "m", baseUrl: `${provider.url}/v1`, apiKeyEnv: "HOME" } } }),
    );
    expect(env.code).toBe(status.PERMISSION_DENIED);
    expect(env.details).toContain("api_key_env HOME");
    // An allowed variable still goes only to the endpoint it is paired with.
    const crossed = await grpcError(
      alice.createSession({ config: { model: { provider: "openai", model: "m", baseUrl: `${provider.url}/v1`, apiKeyEnv: "OPENAI_API_KEY" } } }),
    );
    expect(crossed.code).toBe(status.PERMISSION_DENIED);
    expect(crossed.details).toContain("models.keyedEndpoints");
  });

  it("sends the server's own key to no endpoint but its provider's", async () => {
    const saved = process.env.OPENAI_API_KEY;
    process.env.OPENAI_API_KEY = "sk-server-secret-do-not-leak";
    try {
      provider.handler = (_req, res) =>
        sendSse(res, [
          `data: ${JSON.stringify({ id: "1", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { content: "hi" }, finish_reason: "stop" }] })}\n\n`,
          "data: [DONE]\n\n",
        ]);
      const { session } = await alice.createSession({ config: { model: { provider: "openai", model: "m", baseUrl: `${provider.url}/v1` } } });
      await alice.generate({ sessionId: session!.id, prompt: "hi" });
      expect(provider.requests.at(-1)!.headers.authorization).toBe("Bearer not-needed");
    } finally {
      if (saved === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved;
    }
  });

  it("keeps a session serialisable when a model reports absurd token counts (1e300)", async () => {
    provider.handler = (_req, res) =>
      sendSse(res, [
        `data: ${JSON.stringify({ id: "1", object: "chat.completion.chunk", created: 0, model: "m", choices: [{ index: 0, delta: { content: "ok" }, finish_reason: "stop" }] })}\n\n`,
        `data: ${JSON.stringify({ id: "1", object: "chat.completion.chunk", created: 0, model: "m", choices: [], usage: { prompt_tokens: 1e300, completion_tokens: -5, total_tokens: 1e300 } })}\n\n`,
        "data: [DONE]\n\n",
      ]);
    const model = { provider: "openai", model: "m", baseUrl: `${provider.url}/v1` };
    const { session } = await alice.createSession({ config: { model } });
    const { result } = await alice.generate({ sessionId: session!.id, prompt: "count", apiKey: "sk-test-key-1234" });
    expect(result!.usage).toEqual({ inputTokens: 1e12, outputTokens: 0, totalTokens: 1e12, costUsd: 0 });
    expect((await alice.getSession({ sessionId: session!.id })).session!.usage!.inputTokens).toBe(1e12);
    expect((await alice.listSessions({})).sessions.length).toBeGreaterThan(0);
    // The per-request key went to the session's own endpoint only, and is nowhere in the records.
    expect(provider.requests.at(-1)!.headers.authorization).toBe("Bearer sk-test-key-1234");
    await t.server.runtime.flush();
    const stored = await storedText(t.dataDir);
    expect(stored).toContain(session!.id);
    expect(stored).not.toContain("sk-test-key-1234");
    const scriptedAbsurd = await grpcError(alice.createSession({ config: { model: scripted([{ usage: { inputTokens: 1e300, outputTokens: 0 } }]) } }));
    expect(scriptedAbsurd.code).toBe(status.INVALID_ARGUMENT);
  });
});

describe("input bounds", () => {
  it("refuses oversize fields with INVALID_ARGUMENT naming the field and the limit, echoing none of it", async () => {
    const cases: Array<[() => Promise<unknown>, string]> = [
      [() => alice.createSession({ owner: "x".repeat(3 * 1024 * 1024) }), "owner must be at most 128 characters"],
      [() => alice.createSession({ config: { systemPrompt: "p".repeat(3_900_000) } }), "config.system_prompt is 3900000 bytes; the limit is 262144"],
      [() => alice.createSession({ labels: { ["k".repeat(5000)]: "v" } }), "label keys must be 1 to 128 characters"],
      [
        () => alice.createSession({ config: { model: { provider: "scripted", model: "s", scriptJson: " ".repeat(2 * 1024 * 1024) } } }),
        "config.model.script_json is 2097152 bytes; the limit is 1048576",
      ],
    ];
    for (const [call, message] of cases) {
      const error = await grpcError(call());
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toContain(message);
      expect(error.details.length).toBeLessThan(300);
    }
    const { session } = await alice.createSession({ config: { model: scripted([{ text: "x" }]) } });
    const prompt = await grpcError(alice.generate({ sessionId: session!.id, prompt: "q".repeat(2 * 1024 * 1024) }));
    expect(prompt.details).toBe("prompt is 2097152 bytes; the limit is 1048576");
    expect((await grpcError(alice.createSession({ labels: { "k\n": "v" } }))).code).toBe(status.INVALID_ARGUMENT);
    const key = await grpcError(alice.generate({ sessionId: session!.id, prompt: "hi", apiKey: "sk-abc\r\nX-Evil: 1" }));
    expect(key.details).toBe("api_key must be printable ASCII without spaces");
    // A script cannot blow a long prompt up into a huge answer.
    const echo = scripted([{ text: "{{last_user_message}}".repeat(20) }]);
    const { session: amplifier } = await alice.createSession({ config: { model: echo } });
    const blown = await grpcError(alice.generate({ sessionId: amplifier!.id, prompt: "p".repeat(900_000) }));
    expect(blown.code).toBe(status.RESOURCE_EXHAUSTED);
  });

  it("answers a 200 KB session id at once, and the connection keeps working", async () => {
    const huge = "a".repeat(200_000);
    const error = await grpcError(alice.getSession({ sessionId: huge }));
    expect(error.code).toBe(status.INVALID_ARGUMENT);
    expect(error.details).toBe("session_id must be 1 to 128 letters, digits, \"-\" or \"_\"");
    expect((await grpcError(alice.destroySession({ sessionId: huge }))).code).toBe(status.INVALID_ARGUMENT);
    expect((await alice.listSessions({})).sessions).toBeDefined();
  });

  it("pages messages by bytes", async () => {
    const { session } = await bob.createSession({ config: { model: scripted([{ text: "ok" }], true) } });
    for (let i = 0; i < 6; i++) await bob.generate({ sessionId: session!.id, prompt: `${i}`.repeat(900_000) });
    const texts: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await bob.getMessages({ sessionId: session!.id, pageToken });
      texts.push(...page.messages.map((m) => m.text.slice(0, 2)));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(pages).toBeGreaterThan(1);
    expect(texts).toEqual(["00", "ok", "11", "ok", "22", "ok", "33", "ok", "44", "ok", "55", "ok"]);
  });

  it("pages by bytes as well as by count, so no reply passes the message limit", async () => {
    const big = "s".repeat(250_000);
    const ids: string[] = [];
    for (let i = 0; i < 24; i++) ids.push((await bob.createSession({ config: { systemPrompt: big } })).session!.id);
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await bob.listSessions({ pageToken, pageSize: 1000 });
      seen.push(...page.sessions.map((s) => s.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(pages).toBeGreaterThan(1);
    expect(seen.filter((id) => ids.includes(id))).toEqual(ids);
 
    // Children too: a session with many large children is listed in pages.
    const parent = ids[0]!;
    const children: string[] = [];
    for (let i = 0; i < 20; i++) children.push((await bob.createChildSession({ parentId: parent, config: { systemPrompt: big } })).session!.id);
    const listed: string[] = [];
    let childPages = 0;
    pageToken = "";
    do {
      const page = await bob.listChildSessions({ sessionId: parent, pageToken });
      listed.push(...page.sessions.map((s) => s.id));
      pageToken = page.nextPageToken;
      childPages++;
    } while (pageToken !== "");
    expect(childPages).toBeGreaterThan(1);
    expect(listed).toEqual(children);
  });
});

describe("the audit log", () => {
  it("has one line per mutating call: who, what, which session, the result", async () => {
    const { session } = await alice.createSession({ config: { model: scripted([{ text: "slow", delayMs: 5_000 }]) } });
    await grpcError(bob.destroySession({ sessionId: session!.id }));
    const stream = alice.streamGenerate({ sessionId: session!.id, prompt: "hi" });
    const ended = collect(stream).catch(() => []);
    await new Promise((resolve) => setTimeout(resolve, 100));
    stream.cancel();
    await ended;
    await grpcError(new AgentdClient(t.server.address, { token: "agd_not-a-token" }).listSessions({}));
    await alice.destroySession({ sessionId: session!.id });
    const { session: forAlice } = await root.createSession({ owner: "alice" });
    await t.stop();
    t = await startTestServer({ dataDir: t.dataDir, config: { auth: { tokensFile: path.join(path.dirname(t.dataDir), "tokens.json") } } });
    const lines = (await readFile(path.join(t.dataDir, "audit.log"), "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, string>)
      .filter((line) => line.sessionId === session!.id);
    expect(lines.map((l) => [l.method, l.owner, l.result])).toEqual([
      ["CreateSession", "alice", "OK"],
      ["DestroySession", "bob", "NOT_FOUND"],
      ["StreamGenerate", "alice", "CANCELLED (client_disconnected)"],
      ["DestroySession", "alice", "OK"],
    ]);
    expect(lines[0]).toMatchObject({ role: "user", via: "token" });
    expect(lines[0]!.sessionOwner).toBeUndefined();
    // An admin acting for someone: both are named.
    const byAdmin = (await readFile(path.join(t.dataDir, "audit.log"), "utf8"))
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as Record<string, string>)
      .find((line) => line.sessionId === forAlice!.id);
    expect(byAdmin).toMatchObject({ method: "CreateSession", owner: "ops", role: "admin", sessionOwner: "alice", result: "OK" });
    // A failed sign-in is there too, with no owner; no line holds a token or a prompt.
    const all = await readFile(path.join(t.dataDir, "audit.log"), "utf8");
    expect(all).toContain('"method":"ListSessions","owner":"","role":"user","via":"none","sessionId":"","result":"UNAUTHENTICATED"');
    for (const token of Object.values(tokens)) expect(all).not.toContain(token);
    expect(all).not.toContain("agd_not-a-token");
  });
});
