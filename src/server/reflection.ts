import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { loadSync, type PackageDefinition } from "@grpc/proto-loader";
import { ReflectionService } from "@grpc/reflection";
import { protoPath as healthProtoPath } from "grpc-health-check";
import { DESCRIPTOR_SET_BASE64 } from "../gen/descriptor_set.js";

/**
 * Server reflection for grpcurl and friends. Our own files come from the descriptor set buf compiled
 * (embedded by `make generate`): proto-loader would rename them and drop their imports, which makes
 * grpcurl fail on google.protobuf.Timestamp. The health service has no imports, so proto-loader's
 * definition of it is fine.
 */
export function createReflectionService(): ReflectionService {
  const set = fromBinary(FileDescriptorSetSchema, Buffer.from(DESCRIPTOR_SET_BASE64, "base64"));
  const files = set.file.map((file) => toBinary(FileDescriptorProtoSchema, file));
  // The reflection service reads only `fileDescriptorProtos` from each entry of the definition.
  const ours = { "agentd.v1": { fileDescriptorProtos: files } } as unknown as PackageDefinition;
  return new ReflectionService({ ...ours, ...loadSync(healthProtoPath) });
}
