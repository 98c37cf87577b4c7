/**
 * The web console's API (src/console): the page, the sessions, a live event stream over SSE, a turn
 * started from it and a confirmation answered from it, behind the server's authentication.
 */
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import { makeTempDir, scripted, serversStoppedAfterAll, waitFor } from "./helpers/harness.js";

const start = serversStoppedAfterAll();
const consoleOn = { console: { enabled: true, host: "127.0.0.1", port: 0 } };

/** Reads server-sent events until `until` says enough; returns [event name, data] pairs. */
async function readEvents(url: string, until: (events: Array<[string, unknown]>) => boolean, headers: Record<string, string> = {}): Promise<Array<[string, unknown]>> {
  const controller = new AbortController();
  const response = await fetch(url, { headers, signal: controller.signal });
  expect(response.headers.get("content-type")).toBe("text/event-stream");
  const events: Array<[string, unknown]> = [];
  const decoder = new TextDecoder();
  let buffer = "";
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let end: number;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const name = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      if (name && data) events.push([name, JSON.parse(data)]);
    }
    if (until(events)) break;
  }
  controller.abort();
  return events;
}

const payloadTypes = (events: Array<[string, unknown]>) => events.filter(([name]) => name === "agentd").map(([, e]) => (e as { payload: { type: string } }).payload.type);

describe("the web console", () => {
  it("serves its page, and through its API a turn streams live and a confirmation is answered", async () => {
    const t = await start({ config: consoleOn });
    const base = `http://${t.server.consoleAddress}`;
    const page = await fetch(`${base}/`);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain("<title>agentd console</title>");

    const steps = [{ toolCalls: [{ id: "w1", name: "write_file", arguments: { path: "console.txt", content: "approved in the console" } }] }, { text: "written" }];
    const { session } = await t.client.createSession({ config: { model: scripted(steps), confirmation: { enabled: true, timeoutMs: 0 } } });
    const id = session!.id;
    const listed = (await (await fetch(`${base}/api/sessions`)).json()) as { sessions: Array<{ id: string; state: string }> };
    expect(listed.sessions.map((s) => s.id)).toEqual([id]);

    const stream = readEvents(`${base}/api/sessions/${id}/events?after=0`, (events) => payloadTypes(events).includes("turn_completed"));
    const json = { "content-type": "application/json" };
    // Another web page cannot drive it: a foreign Origin, a non-JSON POST, a rebound host name.
    expect((await fetch(`${base}/api/sessions/${id}/turns`, { method: "POST", headers: { ...json, origin: "https://evil.example" }, body: "{}" })).status).toBe(403);
    expect((await fetch(`${base}/api/sessions/${id}/turns`, { method: "POST", headers: { "content-type": "text/plain" }, body: JSON.stringify({ prompt: "x" }) })).status).toBe(400);
    const { request } = await import("node:http");
    const rebound = await new Promise<number>((resolve, reject) => {
      const [hostname, port] = t.server.consoleAddress!.split(":");
      request({ hostname, port: Number(port), path: "/api/sessions", headers: { host: `attacker.example:${port}` } }, (res) => resolve(res.statusCode!)).on("error", reject).end();
    });
    expect(rebound).toBe(403);
    const started = await fetch(`${base}/api/sessions/${id}/turns`, { method: "POST", headers: json, body: JSON.stringify({ prompt: "write it" }) });
    expect(started.status).toBe(202);
    let detail: { confirmations: Array<{ id: string; toolName: string }> } = { confirmations: [] };
    for (let i = 0; i < 200 && detail.confirmations.length === 0; i++) {
      detail = (await (await fetch(`${base}/api/sessions/${id}`)).json()) as typeof detail;
      if (detail.confirmations.length === 0) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(detail.confirmations[0]!.toolName).toBe("write_file");
    const full = detail as unknown as { context: { tokens: number }; mcpServers: unknown[]; skills: unknown[]; treeUsage: { inputTokens: number } };
    expect(full.context.tokens).toBeGreaterThan(0);
    expect(full.mcpServers).toEqual([]);
    expect(Array.isArray(full.skills)).toBe(true);
    const answered = await fetch(`${base}/api/sessions/${id}/confirmations/${detail.confirmations[0]!.id}`, { method: "POST", headers: json, body: JSON.stringify({ decision: "approve" }) });
    expect(answered.status).toBe(200);
    const seen = payloadTypes(await stream);
    expect(seen).toEqual(expect.arrayContaining(["turn_started", "tool_call", "confirmation_required", "confirmation_resolved", "tool_result", "turn_completed"]));
    expect(seen.indexOf("confirmation_resolved")).toBeGreaterThan(seen.indexOf("confirmation_required"));
    expect(await readFile(path.join(session!.workspace, "console.txt"), "utf8")).toBe("approved in the console");
    // Actions in the console are audited like gRPC calls.
    const auditLines = await (async () => {
      for (let i = 0; i < 100; i++) {
        const text = await readFile(path.join(t.dataDir, "audit.log"), "utf8").catch(() => "");
        if (text.includes("Console.ConfirmToolCall")) return text;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      return "";
    })();
    expect(auditLines).toMatch(/"method":"Console\.StartTurn".*"result":"OK"/);
    expect(auditLines).toMatch(/"method":"Console\.ConfirmToolCall".*"result":"OK"/);
    const messages = (await (await fetch(`${base}/api/sessions/${id}/messages`)).json()) as { messages: Array<{ text: string }> };
    expect(messages.messages.at(-1)!.text).toBe("written");

    // Replay: a reader that comes back after the turn gets it from the log, then "caught up".
    const replay = await readEvents(`${base}/api/sessions/${id}/events?after=0`, (events) => events.some(([name]) => name === "caught_up"));
    expect(payloadTypes(replay)).toEqual(expect.arrayContaining(["turn_started", "confirmation_required", "confirmation_resolved", "tool_result", "turn_completed"]));

    // Bad requests say what is wrong.
    const bad = await fetch(`${base}/api/sessions/${id}/confirmations/nope`, { method: "POST", headers: json, body: JSON.stringify({ decision: "maybe" }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { message: string }).message).toContain('decision must be "approve" or "reject"');
    expect((await fetch(`${base}/api/sessions/no-such-session`)).status).toBe(404);
    expect((await fetch(`${base}/api/elsewhere`)).status).toBe(404);
  });

  it("asks for the same credentials as the gRPC port, and shows a caller only its own sessions", async () => {
    const dir = await makeTempDir();
    const alice = newToken();
    const bob = newToken();
    const tokensFile = path.join(dir, "tokens.json");
    await writeFile(tokensFile, JSON.stringify({ tokens: [{ sha256: hashToken(alice), owner: "alice", role: "user" }, { sha256: hashToken(bob), owner: "bob", role: "user" }] }));
    const t = await start({ config: { ...consoleOn, auth: { tokensFile } } });
    const base = `http://${t.server.consoleAddress}`;
    expect((await fetch(`${base}/`)).status).toBe(200);
    const anonymous = await fetch(`${base}/api/sessions`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { message: string }).message).toContain("requires authentication");
    const as = (token: string) => ({ authorization: `Bearer ${token}` });
    expect((await fetch(`${base}/api/sessions`, { headers: as(alice) })).status).toBe(200);
    const { AgentdClient } = await import("../src/client/client.js");
    const aliceClient = new AgentdClient(t.server.address, { token: alice });
    const { session } = await aliceClient.createSession({});
    aliceClient.close();
    const mine = (await (await fetch(`${base}/api/sessions`, { headers: as(alice) })).json()) as { sessions: Array<{ id: string }> };
    expect(mine.sessions.map((s) => s.id)).toEqual([session!.id]);
    expect(((await (await fetch(`${base}/api/sessions`, { headers: as(bob) })).json()) as { sessions: unknown[] }).sessions).toEqual([]);
    expect((await fetch(`${base}/api/sessions/${session!.id}`, { headers: as(bob) })).status).toBe(404);
    // Each reads their own spending; another owner's is an admin's to read.
    const usage = (await (await fetch(`${base}/api/usage`, { headers: as(alice) })).json()) as { owner: string; budgetUsd: number; period: string };
    expect(usage).toMatchObject({ owner: "alice", budgetUsd: 0, period: "month" });
    expect((await fetch(`${base}/api/usage?owner=bob`, { headers: as(alice) })).status).toBe(403);
    // EventSource cannot send headers: the token may come as a query parameter.
    const events = await readEvents(`${base}/api/sessions/${session!.id}/events?after=0&access_token=${alice}`, (e) => e.some(([name]) => name === "caught_up"));
    expect(events.some(([name]) => name === "caught_up")).toBe(true);
  });

  it("keeps at most console.maxStreams event streams open; one closed makes room", async () => {
    const t = await start({ config: { console: { enabled: true, host: "127.0.0.1", port: 0, maxStreams: 2 } } });
    const base = `http://${t.server.consoleAddress}`;
    const { session } = await t.client.createSession({});
    const url = `${base}/api/sessions/${session!.id}/events?after=0`;
    const readers = [new AbortController(), new AbortController()];
    const open = await Promise.all(readers.map((reader) => fetch(url, { signal: reader.signal })));
    expect(open.map((response) => response.status)).toEqual([200, 200]);
    const refused = await fetch(url);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { message: string }).message).toBe(
      "the console has 2 event streams open, its limit (console.maxStreams); close some pages or tabs",
    );
    readers[0]!.abort();
    const again = await waitFor(async () => {
      const response = await fetch(url);
      if (response.status === 200) return response;
      await response.body?.cancel();
      return undefined;
    });
    await again.body?.cancel();
    readers[1]!.abort();
  });

  it("refuses to listen beyond loopback without authentication, like the gRPC port", async () => {
    const { startTestServer } = await import("./helpers/harness.js");
    await expect(startTestServer({ config: { console: { enabled: true, host: "0.0.0.0", port: 0 } } })).rejects.toThrow(/refusing to listen on 0\.0\.0\.0:0 without authentication/);
  });
});
