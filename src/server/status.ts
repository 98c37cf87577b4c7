import { status, type ServiceError } from "@grpc/grpc-js";
import { Metadata } from "@grpc/grpc-js";
import { AgentdError } from "../errors.js";
import { LlmError } from "../llm/types.js";
import type { Logger } from "../logging.js";

/**
 * Turns any error thrown by a handler into a gRPC status. Domain errors keep their code and message;
 * anything unexpected becomes INTERNAL with a generic message and a log line, so internals never leak.
 */
export function toServiceError(error: unknown, logger: Logger, method: string): Partial<ServiceError> {
  if (error instanceof AgentdError) {
    return serviceError(error.code, error.message);
  }
  if (error instanceof LlmError) {
    return serviceError(codeFromName(error.code), error.message);
  }
  logger.error({ err: error, method }, "unexpected error in handler");
  return serviceError(status.INTERNAL, `internal error in ${method}; see the server log`);
}

export function serviceError(code: status, details: string): Partial<ServiceError> {
  return { code, details, message: details, metadata: new Metadata() };
}

/** Status code for a name like "UNAVAILABLE"; UNKNOWN when the name is not a gRPC code. */
export function codeFromName(name: string): status {
  const code = (status as unknown as Record<string, number | undefined>)[name];
  return typeof code === "number" ? code : status.UNKNOWN;
}
