import { status, type Metadata, type ServiceError, type UntypedServiceImplementation } from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";

export type Call = EventEmitter & { metadata: Metadata };
type Callback = (error: ServiceError | null, ...rest: unknown[]) => void;
type Handler = (call: Call, callback?: Callback) => unknown;

/** What a wrapper does around each call: `ended` is told the status once; `run` may wrap the handler (a trace context). */
export interface AroundCall {
  ended(code: number, details?: string): void;
  run?<T>(handler: () => T): T;
}

/**
 * The handlers, each with `around(method, call)` told how its call ended, once: a unary call by its
 * callback, a stream by its end, its error, or its cancellation.
 */
export function aroundCalls<I extends object>(implementation: I, around: (method: string, call: Call) => AroundCall): I {
  const wrapped: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(implementation as UntypedServiceImplementation)) {
    const run = handler as unknown as Handler;
    const method = name.charAt(0).toUpperCase() + name.slice(1);
    wrapped[name] = (call: Call, callback?: Callback) => {
      const hooks = around(method, call);
      let done = false;
      const end = (code: number, details?: string) => {
        if (done) return;
        done = true;
        hooks.ended(code, details);
      };
      const invoke = () => {
        if (callback) {
          return run(call, (error, ...rest) => {
            end(error ? (error.code ?? status.UNKNOWN) : status.OK, error?.details);
            callback(error, ...rest);
          });
        }
        call.once("finish", () => end(status.OK));
        call.once("cancelled", () => end(status.CANCELLED));
        // Listening to 'error' must not change what an error does: grpc-js sends the status itself.
        call.prependListener("error", (error: ServiceError) => end(error.code ?? status.UNKNOWN, error.details));
        return run(call);
      };
      return hooks.run ? hooks.run(invoke) : invoke();
    };
  }
  return wrapped as I;
}
