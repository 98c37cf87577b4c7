import { status, type ServiceDefinition, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { serviceError } from "./status.js";

/**
 * 64-bit fields are JavaScript numbers in this server, so a value above 2^53 - 1 cannot be decoded.
 * grpc-js answers a request it cannot decode with INTERNAL, which tells the client nothing it can
 * act on; these wrappers let such a request through, marked, and answer it with OUT_OF_RANGE.
 */
const OUT_OF_RANGE = Symbol("a number too large (or too small) to decode");

const TOO_LARGE = `a number in the request is larger than ${Number.MAX_SAFE_INTEGER} (2^53 - 1), the largest this server takes`;
const TOO_SMALL = `a number in the request is smaller than ${Number.MIN_SAFE_INTEGER} (-(2^53 - 1)), the smallest this server takes`;

/** The service definition, its requests decoded with numbers out of range marked instead of failing. */
export function markingOutOfRangeNumbers<D extends ServiceDefinition>(definition: D): D {
  const wrapped: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    wrapped[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (error) {
          const bound = error instanceof Error ? /than Number\.(MAX|MIN)_SAFE_INTEGER/.exec(error.message)?.[1] : undefined;
          if (bound) return { [OUT_OF_RANGE]: bound === "MAX" ? TOO_LARGE : TOO_SMALL };
          throw error;
        }
      },
    };
  }
  return wrapped as D;
}

type Handler = (call: { request?: unknown; emit(event: "error", error: unknown): boolean }, callback?: (error: unknown) => void) => unknown;

/** The handlers, each answering a marked request with OUT_OF_RANGE instead of running. */
export function refusingOutOfRangeNumbers<I extends object>(implementation: I): I {
  const wrapped: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(implementation as UntypedServiceImplementation)) {
    const run = handler as unknown as Handler;
    wrapped[name] = (call: Parameters<Handler>[0], callback?: (error: unknown) => void) => {
      const message = (call.request as Record<symbol, unknown> | undefined)?.[OUT_OF_RANGE];
      if (typeof message !== "string") return run(call, callback);
      const failure = serviceError(status.OUT_OF_RANGE, message);
      if (callback) callback(failure);
      else call.emit("error", failure);
      return undefined;
    };
  }
  return wrapped as I;
}
