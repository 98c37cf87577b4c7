/**
 * The floor of forwarding: a bare @grpc/grpc-js proxy with no agentd code, passing StreamGenerate
 * calls to another server as bytes (request, metadata and replies as they come). The `forward` row
 * of the bench sets agentd's forwarding against it, so the cost of a second process hop on this
 * machine is seen apart from agentd's own.
 *
 * Run by bench/run.ts:  node --import tsx bench/raw-proxy.ts '{"target": "127.0.0.1:port"}'
 */
import { Client, credentials, Server, type ServerWritableStream, type ServiceError } from "@grpc/grpc-js";
import { bindLoopback, serveParent } from "./children.js";

const { target } = JSON.parse(process.argv[2]!) as { target: string };
const PATH = "/agentd.v1.AgentRuntime/StreamGenerate";
const bytes = (value: Buffer) => value;
const upstreamClient = new Client(target, credentials.createInsecure(), { "grpc.enable_retries": 0 });
const server = new Server();
server.addService(
  { StreamGenerate: { path: PATH, requestStream: false, responseStream: true, requestSerialize: bytes, requestDeserialize: bytes, responseSerialize: bytes, responseDeserialize: bytes } },
  {
    StreamGenerate: (call: ServerWritableStream<Buffer, Buffer>) => {
      const upstream = upstreamClient.makeServerStreamRequest(PATH, bytes, bytes, call.request, call.metadata.clone(), {});
      call.on("cancelled", () => upstream.cancel());
      call.on("drain", () => upstream.resume());
      upstream.on("data", (message: Buffer) => {
        if (!call.write(message)) upstream.pause();
      });
      upstream.on("error", (error: ServiceError) => call.emit("error", error));
      upstream.on("end", () => call.end());
    },
  },
);

serveParent(
  () => bindLoopback(server),
  (message) => {
    throw new Error(`unknown request ${String(message.type)}`);
  },
);
