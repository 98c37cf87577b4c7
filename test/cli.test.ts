import { execFile, spawn } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { collect, useSharedTestServer } from "./helpers/harness.js";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const tsx = path.join(root, "node_modules/.bin/tsx");

function agentd(...args: string[]) {
  return run(tsx, [path.join(root, "src/cli/main.ts"), ...args], { cwd: root, timeout: 30_000 });
}

const server = useSharedTestServer();

describe("the agentd command", { timeout: 60_000 }, () => {
  it("chats through the demo script and lists the session it made", async () => {
    const chat = await agentd("chat", "--server", server().server.address, "--script", "examples/demo-script.json", "hello CLI");
    expect(chat.stdout).toContain('You said: "hello CLI"');
    expect(chat.stderr).toContain("[tool] write_file");
    expect(chat.stderr).toContain("[done]");
    const sessionId = /session ([0-9a-f-]{36})/.exec(chat.stderr)![1]!;

    const list = await agentd("sessions", "list", "--server", server().server.address);
    expect(list.stdout).toContain(`${sessionId}  idle`);
    const messages = await agentd("sessions", "messages", sessionId, "--server", server().server.address);
    expect(messages.stdout.split("\n")[0]).toBe("user: hello CLI");
  });

  it("answers every prompt piped into chat, one turn each", async () => {
    const child = spawn(tsx, [path.join(root, "src/cli/main.ts"), "chat", "--server", server().server.address, "--script", "examples/demo-script.json"], {
      cwd: root,
      stdio: ["pipe", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    child.stdin.end("one\ntwo\nthree\n");
    const code = await new Promise((resolve) => child.on("exit", resolve));
    expect(code).toBe(0);
    for (const word of ["one", "two", "three"]) expect(out).toContain(`You said: "${word}"`);
  });

  it("names a bad script file before reaching the server", async () => {
    const failure = await agentd("chat", "--server", server().server.address, "--script", "README.md", "hi").catch((error: { code: number; stderr: string }) => error);
    expect("code" in failure && failure.code).toBe(1);
    expect((failure as { stderr: string }).stderr).toContain("scripted model: script README.md is not valid JSON");
  });

  it("reports a server error with a non-zero exit", async () => {
    const failure = await agentd("sessions", "get", "no-such-session", "--server", server().server.address).catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect("code" in failure && failure.code).toBe(1);
    expect((failure as { stderr: string }).stderr).toContain("session no-such-session not found");
  });
});

describe("agentd sessions: server-owned turns and the context", { timeout: 60_000 }, () => {
  it("starts a turn, follows it from a sequence number, and reports and compacts the context", async () => {
    const { client } = server();
    const { session } = await client.createSession({
      config: { model: { provider: "scripted", model: "s", scriptJson: JSON.stringify({ steps: [{ text: "followed text" }, { text: "second answer" }, { text: "summary of it all" }], repeat: true }) } },
    });
    const id = session!.id;
    const started = await agentd("sessions", "start", id, "hello there", "--server", server().server.address);
    const after = Number(/--after (\d+)/.exec(started.stdout)![1]);
    const follower = spawn(tsx, [path.join(root, "src/cli/main.ts"), "sessions", "follow", id, "--after", String(after), "--server", server().server.address], { cwd: root });
    let out = "";
    let err = "";
    follower.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    follower.stderr.setEncoding("utf8").on("data", (chunk: string) => (err += chunk));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`follow printed: ${out} ${err}`)), 30_000);
      follower.stderr.on("data", () => {
        if (err.includes("turnCompleted")) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    const exited = new Promise((resolve) => follower.on("exit", resolve));
    follower.kill("SIGINT");
    expect(await exited).toBe(0);
    expect(out).toContain("followed text");
    expect(err).toContain("caught up");

    // A compaction keeps the newest turn verbatim: it needs an older one to compact.
    await collect(client.streamGenerate({ sessionId: id, prompt: "once more" }));
    const usage = await agentd("sessions", "context", id, "--server", server().server.address);
    expect(usage.stdout).toMatch(/\d+ tokens; 4 messages in context, 4 in the transcript/);
    const compacted = await agentd("sessions", "compact", id, "--server", server().server.address);
    expect(compacted.stdout).toMatch(/^(summary|truncation): \d+ → \d+ tokens/);
  });
});
