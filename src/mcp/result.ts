import type { CallToolResult, CompatibilityCallToolResult, ContentBlock } from "@modelcontextprotocol/sdk/types.js";
import type { ToolReturn } from "../tools/types.js";

/**
 * What the model reads of an MCP tool's result. Text goes through as it is; binary content
 * (images, audio, blobs) is described in a line, since tool results here are text.
 */
export function mapCallToolResult(result: CallToolResult | CompatibilityCallToolResult): ToolReturn {
  // Servers on the 2024-10-07 protocol answer { toolResult } instead of content.
  if (!("content" in result) && "toolResult" in result) {
    return { output: prettyJson(result.toolResult) };
  }
  const call = result as CallToolResult;
  const parts = (call.content ?? []).map(describeContent);
  const structured = call.structuredContent;
  if (structured !== undefined && !parts.some((part) => sameJson(part, structured))) {
    parts.push(prettyJson(structured));
  }
  const output = parts.join("\n");
  return { output: output === "" ? "(no content)" : output, isError: call.isError === true };
}

function describeContent(block: ContentBlock): string {
  switch (block.type) {
    case "text":
      return block.text;
    case "image":
    case "audio":
      return `[${block.type} ${block.mimeType}, ${block.data.length} bytes base64 — not shown]`;
    case "resource": {
      const { resource } = block;
      if ("text" in resource && typeof resource.text === "string") return resource.text;
      const size = "blob" in resource && typeof resource.blob === "string" ? resource.blob.length : 0;
      return `[resource ${resource.uri}${resource.mimeType ? ` ${resource.mimeType}` : ""}, ${size} bytes base64 — not shown]`;
    }
    case "resource_link":
      return `[resource ${block.uri}: ${block.name}]`;
    default:
      return `[${String((block as { type?: unknown }).type)} content — not shown]`;
  }
}

/** True when a text part already is `value` serialized (servers are told to send both). */
function sameJson(text: string, value: unknown): boolean {
  const trimmed = text.trim();
  if (!trimmed.startsWith("{") && !trimmed.startsWith("[")) return false;
  try {
    return JSON.stringify(JSON.parse(trimmed)) === JSON.stringify(value);
  } catch {
    return false;
  }
}

function prettyJson(value: unknown): string {
  return JSON.stringify(value, null, 2) ?? String(value);
}
