import pino, { type DestinationStream, type Logger } from "pino";

export type { Logger } from "pino";

/**
 * The server's logger. API keys never reach it: they are not part of any logged object, and the
 * redact list catches the field names a careless log call might still pass.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      name: "agentd",
      level,
      redact: { paths: ["apiKey", "api_key", "*.apiKey", "*.api_key", "request.apiKey"], censor: "[redacted]" },
    },
    destination ?? pino.destination(1),
  );
}
