import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";

/**
 * The core does not know it is served over gRPC: only the edges (server, client, cli) may import
 * the generated code, grpc-js or one another. Everything else under src/ is core.
 */
const SRC = path.resolve(import.meta.dirname, "../../src");
const EDGES = ["server", "client", "cli", "gen"];
const WIRE_PACKAGES = [/^@grpc\//, /^grpc-health-check$/, /^@bufbuild\//];

function importsOf(source: string): string[] {
  const pattern = /(?:^|\s)(?:import|export)\s(?:[^'"]*?\sfrom\s)?\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;
  return [...source.matchAll(pattern)].map((match) => match[1] ?? match[2]!);
}

/** The imports of one core file that break the rule, as "specifier (why)". */
export function wireImports(file: string, source: string): string[] {
  const problems: string[] = [];
  for (const specifier of importsOf(source)) {
    if (WIRE_PACKAGES.some((pattern) => pattern.test(specifier))) {
      problems.push(`${specifier} (a gRPC package)`);
      continue;
    }
    if (!specifier.startsWith(".")) continue;
    const target = path.relative(SRC, path.resolve(path.dirname(file), specifier));
    const top = target.split(path.sep)[0]!;
    if (EDGES.includes(top)) problems.push(`${specifier} (src/${top} is an edge)`);
  }
  return problems;
}

function coreFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return dir === SRC && EDGES.includes(entry.name) ? [] : coreFiles(full);
    return entry.name.endsWith(".ts") ? [full] : [];
  });
}

describe("the core's imports", () => {
  it("finds core files to check", () => {
    const folders = new Set(coreFiles().map((file) => path.relative(SRC, file).split(path.sep)[0]));
    for (const folder of ["agent", "session", "tools", "llm", "store", "events", "runtime"]) expect(folders).toContain(folder);
  });

  it("never reach src/gen, the edges or a gRPC package", () => {
    const violations = coreFiles().flatMap((file) =>
      wireImports(file, readFileSync(file, "utf8")).map((problem) => `${path.relative(SRC, file)} imports ${problem}`),
    );
    expect(violations).toEqual([]);
  });

  it("catches each way a core file could break the rule", () => {
    const file = path.join(SRC, "session", "example.ts");
    const source = [
      'import { status } from "@grpc/grpc-js";',
      'import type { AgentEvent } from "../gen/agentd/v1/runtime.js";',
      'export { toSessionProto } from "../server/wire.js";',
      'const lazy = await import("../client/client.js");',
      'import "grpc-health-check";',
      'import { Session } from "./session.js";',
      'import { randomUUID } from "node:crypto";',
    ].join("\n");
    expect(wireImports(file, source)).toEqual([
      "@grpc/grpc-js (a gRPC package)",
      "../gen/agentd/v1/runtime.js (src/gen is an edge)",
      "../server/wire.js (src/server is an edge)",
      "../client/client.js (src/client is an edge)",
      "grpc-health-check (a gRPC package)",
    ]);
  });
});
