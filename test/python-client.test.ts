/**
 * The Python client package (clients/python): it installs with pip, its example runs from the
 * installed copy against a real server, and its generated stubs match proto/. Needs python3 with
 * grpcio, protobuf, pip, setuptools and wheel (Debian's packages; scripts/test-deps.sh installs
 * them), and protoc with grpc_python_plugin for the stubs check.
 */
import { execFile, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { serversStoppedAfterAll } from "./helpers/harness.js";

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, "..");
const PACKAGE = path.join(ROOT, "clients/python");
const start = serversStoppedAfterAll();
const scratch: string[] = [];
afterAll(() => scratch.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const HOW = "on Debian/Ubuntu: apt-get install python3-grpcio python3-protobuf python3-pip python3-setuptools python3-wheel protobuf-compiler protobuf-compiler-grpc (or pip install grpcio protobuf; AGENTD_PYTHON names the interpreter)";

/** A python3 that has grpcio and protobuf: AGENTD_PYTHON, the one on PATH, or the system's. */
function python(): string {
  const candidates = [process.env.AGENTD_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c);
  for (const candidate of candidates) {
    if (spawnSync(candidate, ["-c", "import grpc, google.protobuf"]).status === 0) return candidate;
  }
  throw new Error(`no python3 with grpcio and protobuf (tried ${candidates.join(", ")}); ${HOW}`);
}

function need(tool: string): void {
  if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) throw new Error(`${tool} is missing; ${HOW}`);
}

describe("the Python client", () => {
  it("runs its example against a real server: a turn, an approval, the cost, the event log", async () => {
    const interpreter = python();
    // Installed as a user would (pip, from the package folder; offline, so its dependencies are the
    // system's), and run from elsewhere: the example uses the installed package, not the sources.
    const installed = mkdtempSync(path.join(tmpdir(), "agentd-py-installed-"));
    scratch.push(installed);
    // From a copy: a build leaves folders (build/, *.egg-info) beside the sources it builds.
    const source = mkdtempSync(path.join(tmpdir(), "agentd-py-source-"));
    scratch.push(source);
    cpSync(PACKAGE, source, { recursive: true, filter: (from) => !/(^|\/)(build|__pycache__|[^/]*\.egg-info)$/.test(from) });
    const pip = spawnSync(interpreter, ["-m", "pip", "install", "--quiet", "--target", installed, "--no-deps", "--no-build-isolation", "--no-index", source], {
      encoding: "utf8",
      cwd: installed,
      env: { ...process.env, PIP_DISABLE_PIP_VERSION_CHECK: "1", PIP_ROOT_USER_ACTION: "ignore" },
    });
    expect(pip.status, `pip install failed (${HOW}): ${pip.stderr}`).toBe(0);
    expect(readdirSync(installed)).toEqual(expect.arrayContaining(["agentd", "agentd_client"]));
    const t = await start({ config: { prices: { "scripted/script": { inputPerMillion: 100, outputPerMillion: 400 } }, budgets: { period: "day", perOwnerUsd: 5, owners: {} } } });
    const { stdout } = await run(interpreter, [path.join(PACKAGE, "examples/quickstart.py"), "--server", t.server.address], {
      cwd: installed,
      env: { ...process.env, PYTHONPATH: installed, PYTHONSAFEPATH: "1" },
      timeout: 60_000,
    });
    const session = /^session (\S+)$/m.exec(stdout)?.[1];
    expect(session, stdout).toBeDefined();
    expect(stdout).toContain("[asks] write_file");
    expect(stdout).toMatch(/\[write_file\] .*note\.txt/);
    const done = /\[done\] (\d+) in \/ (\d+) out tokens, (\d+\.\d{6}) USD/.exec(stdout);
    expect(done, stdout).not.toBeNull();
    const [input, output, cost] = [Number(done![1]), Number(done![2]), Number(done![3])];
    expect(cost).toBeCloseTo((input * 100 + output * 400) / 1_000_000, 6);
    expect(cost).toBeGreaterThan(0);
    expect(stdout).toMatch(/\[log\] \d+ events: turn_started, .*confirmation_required, confirmation_resolved, tool_result, .*turn_completed/);
    expect(stdout).toContain("[messages] 4");
    // The owner ("default": no authentication here) spent what the turn cost, of a 5 USD daily budget.
    expect(stdout).toContain(`[owner] default: ${cost.toFixed(6)} USD this day, of 5.0 USD`);
    const { session: stored } = await t.client.getSession({ sessionId: session! });
    expect(readFileSync(path.join(stored!.workspace, "note.txt"), "utf8")).toBe("hello from Python");
  });

  it("ships stubs generated from the current proto", () => {
    need("protoc");
    need("grpc_python_plugin");
    const copy = mkdtempSync(path.join(tmpdir(), "agentd-py-"));
    scratch.push(copy);
    cpSync(PACKAGE, path.join(copy, "clients/python"), { recursive: true });
    cpSync(path.join(ROOT, "proto"), path.join(copy, "proto"), { recursive: true });
    const generated = spawnSync(path.join(copy, "clients/python/generate.sh"), { encoding: "utf8" });
    expect(generated.status, generated.stderr).toBe(0);
    for (const name of readdirSync(path.join(PACKAGE, "agentd/v1"))) {
      if (!name.endsWith(".py")) continue;
      expect(readFileSync(path.join(copy, "clients/python/agentd/v1", name), "utf8"), `${name} is out of date: run clients/python/generate.sh`).toBe(
        readFileSync(path.join(PACKAGE, "agentd/v1", name), "utf8"),
      );
    }
  });
});
