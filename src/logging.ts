import pino, { type DestinationStream, type Logger } from "pino";
import { isColorSupported, prettyFactory } from "pino-pretty";

export type { Logger } from "pino";

/** "json": one JSON object a line (files, pipes, log collectors); "pretty": readable lines for a terminal. */
export type LogFormat = "json" | "pretty";
/** What users choose: "auto" is pretty when the output is a terminal, JSON otherwise. */
export type LogFormatSetting = LogFormat | "auto";

export const LOG_FORMATS: readonly LogFormatSetting[] = ["auto", "json", "pretty"];

/** Resolves "auto" against the stream the logs go to (stdout unless told otherwise). */
export function resolveLogFormat(setting: LogFormatSetting, isTTY = process.stdout.isTTY === true): LogFormat {
  if (setting === "auto") return isTTY ? "pretty" : "json";
  return setting;
}

/**
 * The server's logger. API keys never reach it: they are not part of any logged object, and the
 * redact list catches the field names a careless log call might still pass.
 *
 * `destination` defaults to stdout. With `format` "pretty", each line goes through pino-pretty's
 * formatter in this thread, synchronously (no worker transport), on its way to the same destination.
 */
export function createLogger(level: string, destination?: DestinationStream, format: LogFormat = "json"): Logger {
  const options = {
    name: "agentd",
    level,
    redact: { paths: ["apiKey", "api_key", "*.apiKey", "*.api_key", "request.apiKey"], censor: "[redacted]" },
  };
  if (format === "json") return pino(options, destination ?? pino.destination(1));
  // A terminal is written synchronously, as console.log does, so lines keep their order with other output.
  const target = destination ?? pino.destination({ dest: 1, sync: true });
  return pino(options, prettyStream(target, destination === undefined && isColorSupported));
}

/** A destination that writes each pino line, prettified, to `target`. */
function prettyStream(target: DestinationStream, colorize: boolean): DestinationStream {
  const prettify = prettyFactory({
    colorize,
    singleLine: true,
    translateTime: "SYS:HH:MM:ss.l",
    ignore: "pid,hostname,name",
  });
  return { write: (line: string) => target.write(prettify(line)) };
}
