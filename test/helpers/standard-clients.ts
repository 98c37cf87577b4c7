import { credentials, loadPackageDefinition, type Client, type ServiceError } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { createRequire } from "node:module";
import path from "node:path";

// Clients built only from the standard protos, the way grpcurl or grpc_health_probe see the server.
const require = createRequire(import.meta.url);
export const reflectionProto = path.join(
  path.dirname(require.resolve("@grpc/reflection/package.json")),
  "build/proto/grpc/reflection/v1/reflection.proto",
);
export const healthProto = path.join(path.dirname(require.resolve("grpc-health-check/package.json")), "proto/health/v1/health.proto");

export type Unary = (request: object, callback: (error: ServiceError | null, response: Record<string, unknown>) => void) => void;
type ClientConstructor = new (address: string, creds: ReturnType<typeof credentials.createInsecure>) => Client;

export function clientFor(protoFile: string, qualifiedService: string, address: string): Client {
  const root = loadPackageDefinition(loadSync(protoFile, { enums: String })) as Record<string, unknown>;
  const ctor = qualifiedService.split(".").reduce<unknown>((node, key) => (node as Record<string, unknown>)[key], root);
  return new (ctor as ClientConstructor)(address, credentials.createInsecure());
}

/** A health check as grpc_health_probe makes it: no credentials, no token. */
export async function healthCheck(address: string, service: string): Promise<string> {
  const health = clientFor(healthProto, "grpc.health.v1.Health", address);
  try {
    const response = await new Promise<Record<string, unknown>>((resolve, reject) =>
      (health as unknown as { check: Unary }).check({ service }, (error, reply) => (error ? reject(error) : resolve(reply))),
    );
    return String(response.status);
  } finally {
    health.close();
  }
}
