import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AgentdClient } from "../src/client/client.js";
import { makeTempDir, removeTempDirs, scripted, startTestServer, waitFor } from "./helpers/harness.js";
import { storedText } from "./helpers/records.js";

const agentd = path.resolve(import.meta.dirname, "../bin/agentd");

afterAll(removeTempDirs);

describe("no silent re-runs", () => {
  it("a changing tool call running when the server is killed comes back in doubt, and is not run again", async () => {
    const dataDir = await makeTempDir("agentd-in-doubt-");
    const child = spawn(agentd, ["serve", "--port", "0", "--data-dir", dataDir, "--log-format", "json"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
    const exited = new Promise((resolve) => child.once("exit", resolve));
    try {
      const address = await waitFor(() => /"address":"([^"]+)","dataDir"/.exec(out)?.[1], 15_000);
      const client = new AgentdClient(address);
      const model = scripted([{ toolCalls: [{ id: "slow_write", name: "bash", arguments: { command: "sleep 3; echo ran >> effect.txt" } }] }, { text: "done" }]);
      const { session } = await client.createSession({ config: { model, permissions: { allow: ["bash"] } } });
      const call = client.streamGenerate({ sessionId: session!.id, prompt: "go" });
      call.on("error", () => {});
      // The intent is on disk before the command starts.
      await waitFor(async () => ((await storedText(dataDir)).includes('"callInFlight":{"callId":"slow_write"') ? true : undefined), 10_000);
      child.kill("SIGKILL");
      await exited;
      client.close();

      const t = await startTestServer({ dataDir });
      try {
        const { messages } = await t.client.getMessages({ sessionId: session!.id });
        const result = messages.at(-1)!.toolResult!;
        expect(result).toMatchObject({ callId: "slow_write", isError: true });
        expect(result.output).toMatch(/^in doubt: the server stopped while this call was running/);
        expect(t.logs.some((line) => line.msg === "a tool call was running when the server stopped; it is in doubt and was not run again")).toBe(true);
        // Not run again: the command the killed server started may still finish once, never twice.
        await new Promise((resolve) => setTimeout(resolve, 3_500));
        const effect = await readFile(path.join(session!.workspace, "effect.txt"), "utf8").catch(() => "");
        expect(effect.split("\n").filter(Boolean).length).toBeLessThanOrEqual(1);
        // The session goes on: the next turn runs.
        await t.client.configureSession({ sessionId: session!.id, config: { model: scripted([{ text: "after" }]) } });
        expect((await t.client.generate({ sessionId: session!.id, prompt: "next" })).result!.text).toBe("after");
      } finally {
        await t.stop();
      }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    }
  }, 40_000);
});
