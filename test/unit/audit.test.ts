import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { resolveConfig, type RuntimeConfig } from "../../src/config/config.js";
import type { Logger } from "../../src/logging.js";
import type { Caller } from "../../src/runtime/caller.js";
import { AUDIT_DETAIL_MAX_CHARS, AuditLog, formatAuditLine, type AuditEntry } from "../../src/server/audit.js";

const alice: Caller = { owner: "alice", role: "user", via: "token" };

function fakeLogger() {
  const logger = { error: vi.fn(), warn: vi.fn(), info: vi.fn(), debug: vi.fn() };
  return logger as typeof logger & Logger;
}

function entry(overrides: Partial<AuditEntry> = {}): AuditEntry {
  return { method: "DestroySession", caller: alice, sessionId: "s-1", result: "OK", peer: "ipv4:127.0.0.1:5000", ...overrides };
}

function readLines(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

let dir: string;
let config: (audit?: Partial<RuntimeConfig["audit"]>) => RuntimeConfig;

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "agentd-audit-"));
  config = (audit = {}) => resolveConfig({ dataDir: path.join(dir, "data"), audit });
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe("AuditLog", () => {
  it("writes one JSON object per line with the fields, to <dataDir>/audit.log, mode 0600", async () => {
    const logger = fakeLogger();
    const audit = AuditLog.open(config(), logger);
    const file = path.join(dir, "data", "audit.log");
    expect(audit.file).toBe(file);

    audit.record(entry());
    audit.record(
      entry({
        method: "StreamGenerate",
        caller: { owner: "", role: "admin", via: "none" },
        sessionId: "s-2",
        result: "PERMISSION_DENIED",
        detail: "x".repeat(2000),
        peer: undefined,
        extra: { turnId: "t-9", rounds: 3, cached: false, owner: "forged" },
      }),
    );
    await audit.close();

    const lines = readLines(file);
    expect(lines).toHaveLength(2);
    const [first, second] = lines as [Record<string, unknown>, Record<string, unknown>];
    expect(Object.keys(first)).toEqual(["time", "method", "owner", "role", "via", "sessionId", "result", "peer"]);
    expect(new Date(first.time as string).toISOString()).toBe(first.time);
    expect(first).toMatchObject({ method: "DestroySession", owner: "alice", role: "user", via: "token", sessionId: "s-1", result: "OK", peer: "ipv4:127.0.0.1:5000" });

    expect(second).toMatchObject({ method: "StreamGenerate", owner: "", role: "admin", via: "none", sessionId: "s-2", result: "PERMISSION_DENIED", turnId: "t-9", rounds: 3, cached: false });
    expect((second.detail as string).length).toBe(AUDIT_DETAIL_MAX_CHARS);
    expect(second).not.toHaveProperty("peer");
    expect(second.owner).toBe(""); // an extra cannot overwrite a core field

    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(logger.error).not.toHaveBeenCalled();
  });

  it("formats exactly one line per entry, even when the detail has newlines", () => {
    const line = formatAuditLine(entry({ detail: "line one\nline two" }), new Date(0));
    expect(line.endsWith("\n")).toBe(true);
    expect(line.slice(0, -1)).not.toContain("\n");
    expect(JSON.parse(line)).toMatchObject({ time: "1970-01-01T00:00:00.000Z", detail: "line one\nline two" });
  });

  it("writes nothing when disabled", async () => {
    const audit = AuditLog.open(config({ enabled: false }), fakeLogger());
    expect(audit.enabled).toBe(false);
    for (let i = 0; i < 10; i++) audit.record(entry());
    await audit.close();
    expect(existsSync(path.join(dir, "data"))).toBe(false);
  });

  it("uses audit.file when set, creating its directory", async () => {
    const file = path.join(dir, "elsewhere", "nested", "my-audit.jsonl");
    const audit = AuditLog.open(config({ file }), fakeLogger());
    audit.record(entry());
    await audit.close();
    expect(readLines(file)).toHaveLength(1);
  });

  it("rotates by size, keeping at most maxFiles rotated files, newest lines in audit.log", async () => {
    const lineBytes = Buffer.byteLength(formatAuditLine(entry({ sessionId: "s-000" }), new Date()));
    const maxBytes = lineBytes * 3 + Math.floor(lineBytes / 2); // three lines fit, a fourth would pass the limit
    const audit = AuditLog.open(config({ maxBytes, maxFiles: 2 }), fakeLogger());
    const file = path.join(dir, "data", "audit.log");

    // Recorded in several bursts so that both the batched and the one-line paths rotate.
    for (let i = 0; i < 20; i++) {
      audit.record(entry({ sessionId: `s-${String(i).padStart(3, "0")}` }));
      if (i % 4 === 0) await audit.flush();
    }
    await audit.close();

    expect(readdirSync(path.join(dir, "data")).sort()).toEqual(["audit.log", "audit.log.1", "audit.log.2"]);
    const ids = (name: string) => readLines(path.join(dir, "data", name)).map((line) => line.sessionId);
    // 20 lines, 3 per file: audit.log holds the last 2, .1 and .2 the 3 before each.
    expect(ids("audit.log")).toEqual(["s-018", "s-019"]);
    expect(ids("audit.log.1")).toEqual(["s-015", "s-016", "s-017"]);
    expect(ids("audit.log.2")).toEqual(["s-012", "s-013", "s-014"]);
    for (const name of ["audit.log", "audit.log.1", "audit.log.2"]) {
      expect(statSync(path.join(dir, "data", name)).size).toBeLessThanOrEqual(maxBytes);
    }
    expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it("rotates an existing file that is already full before appending to it", async () => {
    mkdirSync(path.join(dir, "data"));
    const file = path.join(dir, "data", "audit.log");
    writeFileSync(file, "x".repeat(500) + "\n");
    const audit = AuditLog.open(config({ maxBytes: 400, maxFiles: 1 }), fakeLogger());
    audit.record(entry());
    await audit.close();
    expect(readFileSync(`${file}.1`, "utf8")).toBe("x".repeat(500) + "\n");
    expect(readLines(file)).toHaveLength(1);
  });

  it("close() flushes everything recorded before it, and later entries are dropped", async () => {
    const logger = fakeLogger();
    const audit = AuditLog.open(config(), logger);
    for (let i = 0; i < 500; i++) audit.record(entry({ sessionId: `s-${i}` }));
    await audit.close();
    const file = path.join(dir, "data", "audit.log");
    const lines = readLines(file);
    expect(lines).toHaveLength(500);
    expect(lines.map((line) => line.sessionId)).toEqual(Array.from({ length: 500 }, (_, i) => `s-${i}`));

    expect(() => audit.record(entry())).not.toThrow();
    await audit.close();
    expect(readLines(file)).toHaveLength(500);
    expect(logger.warn).toHaveBeenCalledTimes(1);
  });

  it("a failing destination never throws from record(), and is logged once per failure streak", async () => {
    const file = path.join(dir, "data", "audit.log");
    mkdirSync(file, { recursive: true }); // the file path is a directory
    const logger = fakeLogger();
    const audit = AuditLog.open(config(), logger);

    for (let i = 0; i < 5; i++) {
      expect(() => audit.record(entry())).not.toThrow();
      await audit.flush();
    }
    for (let i = 0; i < 5; i++) expect(() => audit.record(entry())).not.toThrow();
    await audit.flush();
    expect(logger.error).toHaveBeenCalledTimes(1);
    expect(logger.error.mock.calls[0]![1]).toMatch(/cannot write the audit log/);

    // The destination heals: writing resumes, the recovery is logged with what was lost.
    rmSync(file, { recursive: true });
    audit.record(entry({ sessionId: "after" }));
    await audit.close();
    expect(readLines(file).map((line) => line.sessionId)).toEqual(["after"]);
    expect(logger.info).toHaveBeenCalledWith(expect.objectContaining({ dropped: 10 }), expect.stringMatching(/written again/));
    expect(logger.error).toHaveBeenCalledTimes(1);
  });

  it("record() does not wait for the disk", async () => {
    const audit = AuditLog.open(config(), fakeLogger());
    audit.record(entry());
    // Nothing has been written synchronously: the directory does not even exist yet.
    expect(existsSync(path.join(dir, "data", "audit.log"))).toBe(false);
    await audit.close();
    expect(readLines(path.join(dir, "data", "audit.log"))).toHaveLength(1);
  });
});
