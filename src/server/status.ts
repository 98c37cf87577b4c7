import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { AgentdError, type ErrorKind } from "../errors.js";
import type { Logger } from "../logging.js";

/** The gRPC status of each domain error kind; the compiler checks that every kind has one. */
const STATUS: Record<ErrorKind, status> = {
  cancelled: status.CANCELLED,
  unknown: status.UNKNOWN,
  invalid_argument: status.INVALID_ARGUMENT,
  deadline_exceeded: status.DEADLINE_EXCEEDED,
  not_found: status.NOT_FOUND,
  already_exists: status.ALREADY_EXISTS,
  permission_denied: status.PERMISSION_DENIED,
  resource_exhausted: status.RESOURCE_EXHAUSTED,
  failed_precondition: status.FAILED_PRECONDITION,
  aborted: status.ABORTED,
  out_of_range: status.OUT_OF_RANGE,
  unimplemented: status.UNIMPLEMENTED,
  internal: status.INTERNAL,
  unavailable: status.UNAVAILABLE,
  data_loss: status.DATA_LOSS,
  unauthenticated: status.UNAUTHENTICATED,
};

export function statusOf(kind: ErrorKind): status {
  return STATUS[kind];
}

/** The status name clients read in TurnError.code, such as "UNAVAILABLE". */
export function statusName(kind: ErrorKind): string {
  return status[STATUS[kind]];
}

/**
 * Turns any error thrown by a handler into a gRPC status, once, at the edge. Domain errors keep
 * their kind and message (their `cause` is not logged: a provider's own error may echo a key);
 * anything unexpected becomes INTERNAL with a generic message and a log line carrying the
 * original, so internals never leak.
 */
export function toServiceError(error: unknown, logger: Logger, method: string): Partial<ServiceError> {
  if (error instanceof AgentdError) return serviceError(statusOf(error.kind), error.message);
  logger.error({ err: error, method }, "unexpected error in handler");
  return serviceError(status.INTERNAL, `internal error in ${method}; see the server log`);
}

/** Error details travel in HTTP/2 trailers, which clients cap (8 KiB by default): keep them well below. */
const MAX_DETAILS_CHARS = 2048;

export function serviceError(code: status, details: string): Partial<ServiceError> {
  const text = details.length > MAX_DETAILS_CHARS ? `${details.slice(0, MAX_DETAILS_CHARS)}…` : details;
  return { code, details: text, message: text, metadata: new Metadata() };
}
