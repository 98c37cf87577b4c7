import type { Stream } from "node:stream";
import { StringDecoder } from "node:string_decoder";

/**
 * Calls `onLine` for each line written to `stream`, without its line break. A line longer than
 * `maxChars` is cut there (with a note) and the rest of it dropped, so a server that writes
 * megabytes without a newline cannot grow our memory or our logs.
 */
export function onEachLine(stream: Stream, maxChars: number, onLine: (line: string) => void): void {
  const decoder = new StringDecoder("utf8");
  let pending = "";
  let dropping = false;

  const take = (text: string) => {
    let rest = text;
    for (let end = rest.indexOf("\n"); end !== -1; end = rest.indexOf("\n")) {
      const line = pending + rest.slice(0, end);
      if (!dropping) onLine(line.endsWith("\r") ? line.slice(0, -1) : line);
      pending = "";
      dropping = false;
      rest = rest.slice(end + 1);
    }
    if (dropping) return;
    pending += rest;
    if (pending.length > maxChars) {
      onLine(`${pending.slice(0, maxChars)} [line cut at ${maxChars} characters]`);
      pending = "";
      dropping = true;
    }
  };

  stream.on("data", (chunk: Buffer | string) => take(typeof chunk === "string" ? chunk : decoder.write(chunk)));
  stream.on("end", () => {
    take(decoder.end());
    if (pending !== "" && !dropping) onLine(pending);
    pending = "";
  });
}
