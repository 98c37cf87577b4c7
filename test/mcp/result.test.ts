import { describe, expect, it } from "vitest";
import { mapCallToolResult } from "../../src/mcp/result.js";

describe("mapCallToolResult", () => {
  it("joins text parts and keeps isError", () => {
    expect(mapCallToolResult({ content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] })).toEqual({ output: "a\nb", isError: false });
    expect(mapCallToolResult({ content: [{ type: "text", text: "bad" }], isError: true })).toEqual({ output: "bad", isError: true });
  });

  it("describes binary content instead of showing it", () => {
    const result = mapCallToolResult({
      content: [
        { type: "image", mimeType: "image/png", data: "A".repeat(1234) },
        { type: "audio", mimeType: "audio/wav", data: "QUJD" },
        { type: "resource", resource: { uri: "file:///a.txt", mimeType: "text/plain", text: "inside" } },
        { type: "resource", resource: { uri: "file:///b.bin", mimeType: "application/octet-stream", blob: "AAAA" } },
        { type: "resource_link", uri: "file:///c.md", name: "c.md" },
      ],
    });
    expect(result.output).toBe(
      [
        "[image image/png, 1234 bytes base64 — not shown]",
        "[audio audio/wav, 4 bytes base64 — not shown]",
        "inside",
        "[resource file:///b.bin application/octet-stream, 4 bytes base64 — not shown]",
        "[resource file:///c.md: c.md]",
      ].join("\n"),
    );
  });

  it("adds structured content as JSON, unless a text part already is that JSON", () => {
    expect(mapCallToolResult({ content: [], structuredContent: { sum: 3 } }).output).toBe('{\n  "sum": 3\n}');
    expect(mapCallToolResult({ content: [{ type: "text", text: "three" }], structuredContent: { sum: 3 } }).output).toBe('three\n{\n  "sum": 3\n}');
    expect(mapCallToolResult({ content: [{ type: "text", text: '{"sum":3}' }], structuredContent: { sum: 3 } }).output).toBe('{"sum":3}');
  });

  it("says when there is nothing, and reads the old toolResult shape", () => {
    expect(mapCallToolResult({ content: [] })).toEqual({ output: "(no content)", isError: false });
    expect(mapCallToolResult({ toolResult: { ok: true } })).toEqual({ output: '{\n  "ok": true\n}' });
  });
});
