/**
 * The one error type of the core. `kind` is a domain word; each edge (the gRPC server today) maps it
 * to its own status once, so the message written here is exactly what a client reads.
 */
export const ERROR_KINDS = [
  "cancelled",
  "unknown",
  "invalid_argument",
  "deadline_exceeded",
  "not_found",
  "already_exists",
  "permission_denied",
  "resource_exhausted",
  "failed_precondition",
  "aborted",
  "out_of_range",
  "unimplemented",
  "internal",
  "unavailable",
  "data_loss",
  "unauthenticated",
] as const;

export type ErrorKind = (typeof ERROR_KINDS)[number];

export interface AgentdErrorOptions {
  /** The underlying failure, kept for the logs; never shown to a client. */
  cause?: unknown;
  /** Whether the same request may succeed later (an outage, a rate limit). */
  retryable?: boolean;
}

export class AgentdError extends Error {
  readonly retryable: boolean;

  constructor(
    readonly kind: ErrorKind,
    message: string,
    options: AgentdErrorOptions = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.retryable = options.retryable ?? (kind === "unavailable" || kind === "resource_exhausted");
  }
}

export const invalidArgument = (message: string) => new AgentdError("invalid_argument", message);
export const notFound = (message: string) => new AgentdError("not_found", message);
export const failedPrecondition = (message: string) => new AgentdError("failed_precondition", message);
export const resourceExhausted = (message: string) => new AgentdError("resource_exhausted", message);

/** The kind for a name such as "UNAVAILABLE" or "unavailable"; undefined when it names none. */
export function errorKindFromName(name: string): ErrorKind | undefined {
  const kind = name.toLowerCase();
  return (ERROR_KINDS as readonly string[]).includes(kind) ? (kind as ErrorKind) : undefined;
}

/** True when the error comes from an aborted AbortSignal (ours, fetch's or an SDK's). */
export function isAbortError(error: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return true;
  if (!(error instanceof Error)) return false;
  return error.name === "AbortError" || error.name === "APIUserAbortError";
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
