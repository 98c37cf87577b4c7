import { AgentdClient, tlsCredentials } from "../client/client.js";

/** Flags that say how to reach a server, shared by the client commands. */
export const connectOptions = {
  server: { type: "string", default: process.env.AGENTD_SERVER || "127.0.0.1:50051" },
  token: { type: "string" },
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
} as const;

export const CONNECT_HELP = `  --server ADDR     server address (default: the AGENTD_SERVER environment variable, else 127.0.0.1:50051)
  --token TOKEN     bearer token (default: the AGENTD_TOKEN environment variable)
  --tls-ca FILE     connect with TLS, trusting this CA; --tls-cert/--tls-key add a client certificate`;

export interface ConnectFlagValues {
  server: string;
  token?: string;
  "tls-ca"?: string;
  "tls-cert"?: string;
  "tls-key"?: string;
}

export function connect(values: ConnectFlagValues): AgentdClient {
  const token = values.token ?? process.env.AGENTD_TOKEN;
  if ((values["tls-cert"] === undefined) !== (values["tls-key"] === undefined)) {
    throw new Error("--tls-cert and --tls-key go together (a client certificate and its key)");
  }
  const tls = values["tls-ca"] ?? values["tls-cert"];
  return new AgentdClient(values.server, {
    token: token || undefined,
    credentials: tls ? tlsCredentials({ caFile: values["tls-ca"], certFile: values["tls-cert"], keyFile: values["tls-key"] }) : undefined,
  });
}
