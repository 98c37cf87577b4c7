import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { AgentdError, type ErrorKind } from "../errors.js";
import type { Logger } from "../logging.js";

/** The gRPC status for a domain error kind: the kinds are the status names in lower case. */
export function statusOf(kind: ErrorKind): status {
  return status[kind.toUpperCase() as keyof typeof status] as status;
}

/** The status name clients read in TurnError.code, such as "UNAVAILABLE". */
export function statusName(kind: ErrorKind): string {
  return kind.toUpperCase();
}

/**
 * Turns any error thrown by a handler into a gRPC status, once, at the edge. Domain errors keep
 * their kind and message; anything unexpected becomes INTERNAL with a generic message and a log
 * line carrying the original, so internals never leak.
 */
export function toServiceError(error: unknown, logger: Logger, method: string): Partial<ServiceError> {
  if (error instanceof AgentdError) {
    if (error.cause !== undefined) logger.debug({ err: error.cause, method }, "handler error cause");
    return serviceError(statusOf(error.kind), error.message);
  }
  logger.error({ err: error, method }, "unexpected error in handler");
  return serviceError(status.INTERNAL, `internal error in ${method}; see the server log`);
}

export function serviceError(code: status, details: string): Partial<ServiceError> {
  return { code, details, message: details, metadata: new Metadata() };
}
