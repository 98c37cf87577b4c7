import { status, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import { EventEmitter } from "node:events";

type Handler = (call: EventEmitter, callback?: (error: ServiceError | null, ...rest: unknown[]) => void) => unknown;

/**
 * The handlers, each reporting how its call ended (method name, status name) once: a unary call by
 * its callback, a stream by its end, its error, or its cancellation.
 */
export function countingCalls<I extends object>(implementation: I, ended: (method: string, code: string) => void): I {
  const wrapped: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(implementation as UntypedServiceImplementation)) {
    const run = handler as unknown as Handler;
    const method = name.charAt(0).toUpperCase() + name.slice(1);
    wrapped[name] = (call: EventEmitter, callback?: (error: ServiceError | null, ...rest: unknown[]) => void) => {
      let counted = false;
      const end = (code: number) => {
        if (counted) return;
        counted = true;
        ended(method, status[code] ?? String(code));
      };
      if (callback) {
        return run(call, (error, ...rest) => {
          end(error ? (error.code ?? status.UNKNOWN) : status.OK);
          callback(error, ...rest);
        });
      }
      call.once("finish", () => end(status.OK));
      call.once("cancelled", () => end(status.CANCELLED));
      // Listening to 'error' must not change what an error does: grpc-js sends the status itself.
      call.prependListener("error", (error: ServiceError) => end(error.code ?? status.UNKNOWN));
      return run(call);
    };
  }
  return wrapped as I;
}
