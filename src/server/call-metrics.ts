import { status } from "@grpc/grpc-js";
import { aroundCalls } from "./call-end.js";

/** The handlers, each reporting how its call ended (method name, status name) once. */
export function countingCalls<I extends object>(implementation: I, ended: (method: string, code: string) => void): I {
  return aroundCalls(implementation, (method) => ({ ended: (code) => ended(method, status[code] ?? String(code)) }));
}
