import { status } from "@grpc/grpc-js";

/**
 * An error that knows which gRPC status it maps to. Domain code throws these; the server layer turns
 * them into statuses, so the message written here is exactly what a client reads.
 */
export class AgentdError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = "AgentdError";
  }
}

export const invalidArgument = (message: string) => new AgentdError(status.INVALID_ARGUMENT, message);
export const notFound = (message: string) => new AgentdError(status.NOT_FOUND, message);
export const failedPrecondition = (message: string) => new AgentdError(status.FAILED_PRECONDITION, message);
export const resourceExhausted = (message: string) => new AgentdError(status.RESOURCE_EXHAUSTED, message);

/** True when the error comes from an aborted AbortSignal (ours, fetch's or an SDK's). */
export function isAbortError(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  if (!(error instanceof Error)) return false;
  return error.name === "AbortError" || error.name === "APIUserAbortError";
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Name of a gRPC status code, such as "UNAVAILABLE", as reported in TurnError events. */
export function statusName(code: status): string {
  return status[code] ?? "UNKNOWN";
}
