import type { ClientDuplexStream } from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { useSharedTestServer } from "./helpers/harness.js";
import { clientFor, healthProto, reflectionProto, type Unary } from "./helpers/standard-clients.js";

const server = useSharedTestServer();

describe("standard gRPC services", () => {
  it("answers health checks for the server and for agentd.v1.AgentRuntime", async () => {
    const health = clientFor(healthProto, "grpc.health.v1.Health", server().server.address);
    const check = (service: string) =>
      new Promise<Record<string, unknown>>((resolve, reject) =>
        (health as unknown as { check: Unary }).check({ service }, (error, response) => (error ? reject(error) : resolve(response))),
      );
    expect(await check("")).toEqual({ status: "SERVING" });
    expect(await check("agentd.v1.AgentRuntime")).toEqual({ status: "SERVING" });
    health.close();
  });

  it("lists the service and serves its descriptors through reflection", async () => {
    const reflection = clientFor(reflectionProto, "grpc.reflection.v1.ServerReflection", server().server.address);
    const stream = (reflection as unknown as { serverReflectionInfo(): ClientDuplexStream<object, Record<string, unknown>> }).serverReflectionInfo();
    const ask = (request: object) =>
      new Promise<Record<string, unknown>>((resolve, reject) => {
        stream.once("data", resolve);
        stream.once("error", reject);
        stream.write(request);
      });

    const listed = (await ask({ listServices: "" })) as { listServicesResponse: { service: Array<{ name: string }> } };
    const names = listed.listServicesResponse.service.map((s) => s.name);
    expect(names).toContain("agentd.v1.AgentRuntime");
    expect(names).toContain("grpc.health.v1.Health");

    const file = (await ask({ fileContainingSymbol: "agentd.v1.AgentRuntime" })) as {
      fileDescriptorResponse: { fileDescriptorProto: Buffer[] };
    };
    // grpcurl needs the file that defines the service and, transitively, every file it depends on.
    const files = file.fileDescriptorResponse.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    const byName = new Map(files.map((f) => [f.name, f]));
    const runtime = files.find((f) => f.service.some((s) => s.name === "AgentRuntime"))!;
    expect(runtime.service[0]!.method.map((m) => m.name)).toContain("StreamGenerate");
    expect(runtime.dependency.length).toBeGreaterThan(0);
    for (const dependency of runtime.dependency) expect(byName.has(dependency), dependency).toBe(true);
    const timestampFile = files.find((f) => f.messageType.some((m) => m.name === "Timestamp"));
    expect(timestampFile?.package).toBe("google.protobuf");
    expect(runtime.name).toBe("agentd/v1/runtime.proto");
    expect(runtime.dependency).toEqual(["google/protobuf/timestamp.proto"]);
    stream.end();
    reflection.close();
  });
});
