import { describe, expect, it } from "vitest";
import { StreamQuota } from "../../src/server/stream-quota.js";

describe("StreamQuota", () => {
  it("refuses a stream past the server-wide limit, whoever asks, and takes one again once a place is given back", () => {
    const quota = new StreamQuota({ perCaller: 5, total: 2 });
    const first = quota.acquire("alice", "ipv4:10.0.0.1:5000");
    quota.acquire("bob", "ipv4:10.0.0.2:5000");
    expect(() => quota.acquire("carol", "ipv4:10.0.0.3:5000")).toThrow(/the server has 2 Subscribe\/WatchTurn streams open, its limit/);
    first();
    // Giving a place back twice frees it once.
    first();
    expect(() => quota.acquire("carol", "ipv4:10.0.0.3:5000")).not.toThrow();
    expect(() => quota.acquire("dave", "ipv4:10.0.0.4:5000")).toThrow(/its limit/);
  });

  it("counts anonymous callers by network address, not by port", () => {
    const quota = new StreamQuota({ perCaller: 1, total: 10 });
    quota.acquire("", "ipv4:10.0.0.1:5000");
    expect(() => quota.acquire("", "ipv4:10.0.0.1:6000")).toThrow(/this client \(10\.0\.0\.1\) already has 1/);
    expect(() => quota.acquire("", "ipv4:10.0.0.2:5000")).not.toThrow();
  });
});
