import { spawn, type ChildProcess } from "node:child_process";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, it } from "vitest";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import { makeTempDir, removeTempDirs, startTestServer, type TestServer } from "./helpers/harness.js";
import { makePki, type Pki } from "./helpers/pki.js";

/**
 * The agentd command against servers that require authentication: `serve` refuses a non-loopback
 * address without it, and `chat`/`sessions` authenticate with --token, AGENTD_TOKEN and the --tls-*
 * flags. The servers are started in-process on loopback; only the CLI runs as a child process.
 * The tests are independent of each other and run concurrently: each spawn costs about a second of
 * CPU (tsx compiles the CLI), so keep their number small.
 */

const root = path.resolve(import.meta.dirname, "..");
const agentd = path.join(root, "bin/agentd");
const SPAWN_TIMEOUT_MS = 15_000;

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const started: ChildProcess[] = [];

/**
 * Runs bin/agentd to its end, its output on pipes, in `cwd` (the checkout by default, so relative
 * paths like examples/demo-script.json resolve). AGENTD_TOKEN is taken out of the environment
 * unless `env` sets it. A process still running after SPAWN_TIMEOUT_MS is killed.
 */
function run(args: string[], options: { cwd?: string; env?: Record<string, string> } = {}): Promise<Ran> {
  const env = { ...process.env };
  delete env.AGENTD_TOKEN;
  const child = spawn(agentd, args, { cwd: options.cwd ?? root, env: { ...env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  started.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill("SIGKILL"), SPAWN_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    // "close", not "exit": the pipes are drained by then.
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

async function writeTokensFile(dir: string, entries: Array<{ token: string; owner: string }>): Promise<string> {
  const file = path.join(dir, "tokens.json");
  await writeFile(file, JSON.stringify({ tokens: entries.map(({ token, owner }) => ({ sha256: hashToken(token), owner, role: "user" })) }));
  return file;
}

const tokens = { alice: newToken(), bob: newToken() };
let plain: TestServer;
let mtls: TestServer;
let pki: Pki;

beforeAll(async () => {
  const dir = await makeTempDir("agentd-cli-auth-");
  const tokensFile = await writeTokensFile(dir, [
    { token: tokens.alice, owner: "alice" },
    { token: tokens.bob, owner: "bob" },
  ]);
  pki = await makePki(["alice"]);
  const cert = { certFile: pki.server.certFile, keyFile: pki.server.keyFile };
  [plain, mtls] = await Promise.all([
    startTestServer({ config: { store: "memory", auth: { tokensFile } } }),
    startTestServer({ config: { store: "memory", tls: { ...cert, clientCaFile: pki.ca.certFile } } }),
  ]);
});

afterAll(async () => {
  for (const child of started) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await Promise.all([plain?.stop(), mtls?.stop()]);
  await removeTempDirs();
});

describe.concurrent("agentd serve", () => {
  it("refuses a non-loopback --host without authentication: exit 1, and says what to do", async ({ expect }) => {
    const dataDir = await makeTempDir("agentd-cli-auth-serve-");
    // The refusal comes before anything is bound, so nothing ever listens on 0.0.0.0.
    const ran = await run(["serve", "--host", "0.0.0.0", "--port", "0", "--data-dir", dataDir, "--store", "memory"], { cwd: dataDir });
    expect(ran.signal).toBeNull(); // not killed by the timeout: it exited by itself
    expect(ran.code).toBe(1);
    expect(ran.stderr).toMatch(/refusing to listen on 0\.0\.0\.0\S* without authentication/);
    expect(ran.stderr).toContain("--insecure");
    expect(ran.stdout).not.toContain("agentd listening");
  });
});

describe.concurrent("agentd chat and sessions with a tokens file", () => {
  it("without a token: exit 1 with the server's UNAUTHENTICATED details", async ({ expect }) => {
    const ran = await run(["sessions", "list", "--server", plain.server.address]);
    expect(ran.code).toBe(1);
    expect(ran.stderr).toContain("requires authentication");
    expect(ran.stdout).toBe("");
  });

  it("chat with --token creates a session of the token's owner; sessions list shows it with --token or AGENTD_TOKEN", async ({ expect }) => {
    const address = plain.server.address;
    const chat = await run(["chat", "--server", address, "--token", tokens.alice, "--script", "examples/demo-script.json", "hi"]);
    expect(chat.stderr).not.toContain("[error]");
    expect(chat.code).toBe(0);
    expect(chat.stdout).toContain('You said: "hi"');
    const sessionId = /session ([0-9a-f-]{36})/.exec(chat.stderr)?.[1];
    expect(sessionId).toBeDefined();

    const [withFlag, withEnv] = await Promise.all([
      // --token wins over AGENTD_TOKEN (bob's would not list alice's session).
      run(["sessions", "list", "--server", address, "--token", tokens.alice], { env: { AGENTD_TOKEN: tokens.bob } }),
      run(["sessions", "list", "--server", address], { env: { AGENTD_TOKEN: tokens.alice } }),
    ]);
    for (const list of [withFlag, withEnv]) {
      expect(list.stderr).toBe("");
      expect(list.code).toBe(0);
      expect(list.stdout).toContain(`${sessionId}  idle  owner=alice`);
    }
  });
});

describe.concurrent("agentd sessions over TLS", () => {
  it("--tls-ca, --tls-cert and --tls-key reach an mTLS server as the certificate's CN", async ({ expect }) => {
    const client = pki.clients.alice!;
    const ran = await run(["sessions", "create", "--server", mtls.server.address, "--tls-ca", pki.ca.certFile, "--tls-cert", client.certFile, "--tls-key", client.keyFile]);
    expect(ran.code).toBe(0);
    expect(ran.stdout).toMatch(/^[0-9a-f-]{36} {2}idle {2}owner=alice /);
  });
});
