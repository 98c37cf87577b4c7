import {
  credentials,
  makeGenericClientConstructor,
  Metadata,
  Server,
  ServerCredentials,
  status,
  type ChannelCredentials,
  type Client,
  type ServiceDefinition,
  type ServiceError,
  type ServerUnaryCall,
  type sendUnaryData,
} from "@grpc/grpc-js";
import { HealthImplementation, service as healthService } from "grpc-health-check";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveConfig } from "../../src/config/config.js";
import { AgentdError } from "../../src/errors.js";
import { Authenticator } from "../../src/server/auth/authenticator.js";
import { callerFromPeerCertificate, createServerCredentials } from "../../src/server/auth/tls.js";
import { hashToken, newToken } from "../../src/server/auth/tokens.js";
import { removeTempDirs } from "../helpers/harness.js";
import { makePki, type Pki } from "../helpers/pki.js";

let pki: Pki;
const pem: Record<string, Buffer> = {};
/** A file of the PKI's dir (which holds ca.pem, ca.key, server.pem, server.key and client-<CN>.pem/.key). */
const file = (name: string) => path.join(pki.dir, name);

/** The CA, the server certificate and the clients alice and root; mallory is an "alice" from another CA. */
async function loadPki(): Promise<void> {
  const [main, rogue] = await Promise.all([makePki(["alice", "root"]), makePki(["alice"])]);
  pki = main;
  const files: Record<string, { certFile: string; keyFile: string }> = {
    ca: main.ca,
    server: main.server,
    alice: main.clients.alice!,
    root: main.clients.root!,
    mallory: rogue.clients.alice!,
  };
  for (const [name, { certFile, keyFile }] of Object.entries(files)) {
    pem[`${name}.pem`] = await readFile(certFile);
    pem[`${name}.key`] = await readFile(keyFile);
  }
}

/** A raw-bytes unary method that answers with the caller as JSON, the way the service's handlers authenticate. */
const WHOAMI: ServiceDefinition = {
  whoAmI: {
    path: "/agentd.test.Auth/WhoAmI",
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
    originalName: "whoAmI",
    requestType: undefined as never,
    responseType: undefined as never,
  },
} as unknown as ServiceDefinition;
const WhoAmIClient = makeGenericClientConstructor(WHOAMI, "Auth");
const HealthClient = makeGenericClientConstructor(healthService, "Health");

interface Started {
  address: string;
  stop(): Promise<void>;
}

async function startServer(serverCredentials: ServerCredentials, authenticator: Authenticator): Promise<Started> {
  const server = new Server();
  new HealthImplementation({ "": "SERVING" }).addToServer(server);
  server.addService(WHOAMI, {
    whoAmI: (call: ServerUnaryCall<Buffer, Buffer>, callback: sendUnaryData<Buffer>) => {
      authenticator.authenticate(call).then(
        (caller) => callback(null, Buffer.from(JSON.stringify(caller))),
        (error: unknown) =>
          callback({ code: error instanceof AgentdError && error.kind === "unauthenticated" ? status.UNAUTHENTICATED : status.INTERNAL, details: String((error as Error).message) }),
      );
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", serverCredentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  return { address: `localhost:${port}`, stop: () => new Promise((resolve) => server.tryShutdown(() => resolve())) };
}

type Unary = (request: unknown, metadata: Metadata, options: object, callback: (error: ServiceError | null, response?: unknown) => void) => void;

function unary(client: Client, method: string, request: unknown, metadata = new Metadata()): Promise<unknown> {
  return new Promise((resolve, reject) =>
    (client as unknown as Record<string, Unary>)[method]!.call(client, request, metadata, { deadline: Date.now() + 5_000 }, (error, response) =>
      error ? reject(error) : resolve(response),
    ),
  );
}

const clients: Client[] = [];
function connect(Ctor: typeof WhoAmIClient, address: string, creds: ChannelCredentials): Client {
  const client = new Ctor(address, creds);
  clients.push(client);
  return client;
}

const clientCreds = (name?: "alice" | "root" | "mallory") =>
  name ? credentials.createSsl(pem["ca.pem"], pem[`${name}.key`], pem[`${name}.pem`]) : credentials.createSsl(pem["ca.pem"]);

beforeAll(loadPki);

afterAll(async () => {
  for (const client of clients) client.close();
  await removeTempDirs();
});

describe("createServerCredentials", () => {
  it("is plaintext without a certificate", () => {
    expect(createServerCredentials({ certFile: "", keyFile: "", clientCaFile: "" })._isSecure()).toBe(false);
  });

  it("names unreadable or unusable files, without their content", () => {
    const tls = { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: "" };
    expect(() => createServerCredentials({ ...tls, certFile: file("nope.pem") })).toThrow(/^cannot read tls\.certFile .*nope\.pem \(ENOENT\)$/);
    expect(() => createServerCredentials({ ...tls, clientCaFile: file("nope-ca.pem") })).toThrow(/^cannot read tls\.clientCaFile .*nope-ca\.pem/);
    expect(() => createServerCredentials({ ...tls, certFile: pki.server.keyFile })).toThrow(/tls\.certFile .*server\.key is not a PEM certificate/);
    expect(() => createServerCredentials({ ...tls, keyFile: pki.server.certFile })).toThrow(/tls\.keyFile .*server\.pem is not an unencrypted PEM private key/);
    expect(() => createServerCredentials({ ...tls, keyFile: pki.clients.alice!.keyFile })).toThrow(/is not the private key of the certificate in tls\.certFile/);
    expect(() => createServerCredentials({ ...tls, clientCaFile: pki.ca.keyFile })).toThrow(/tls\.clientCaFile .*ca\.key is not a PEM certificate/);
    try {
      createServerCredentials({ ...tls, keyFile: pki.server.certFile });
    } catch (error) {
      expect(String(error)).not.toContain("BEGIN");
    }
  });
});

describe("TLS server", () => {
  it("serves TLS without client certificates when there is no client CA", async () => {
    const config = resolveConfig({ tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile } });
    const auth = await Authenticator.create(config);
    expect(auth.required).toBe(false);
    const server = await startServer(createServerCredentials(config.tls), auth);
    try {
      const health = connect(HealthClient, server.address, clientCreds());
      expect(await unary(health, "check", { service: "" })).toMatchObject({ status: "SERVING" });
      const who = connect(WhoAmIClient, server.address, clientCreds());
      expect(JSON.parse(String(await unary(who, "whoAmI", Buffer.alloc(0))))).toEqual({ owner: "", role: "admin", via: "none" });
    } finally {
      await server.stop();
    }
  });
});

describe("mutual TLS", () => {
  let server: Started;
  let token: string;

  beforeAll(async () => {
    token = newToken();
    await writeFile(file("tokens.json"), JSON.stringify({ tokens: [{ sha256: hashToken(token), owner: "bob", role: "user" }] }));
    const config = resolveConfig({
      tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: pki.ca.certFile },
      auth: { tokensFile: file("tokens.json"), adminOwners: ["root"] },
    });
    server = await startServer(createServerCredentials(config.tls), await Authenticator.create(config));
  });

  afterAll(async () => {
    await server?.stop();
  });

  it("maps the verified client certificate to the caller", async () => {
    const alice = connect(WhoAmIClient, server.address, clientCreds("alice"));
    expect(JSON.parse(String(await unary(alice, "whoAmI", Buffer.alloc(0))))).toEqual({ owner: "alice", role: "user", via: "mtls" });
    const root = connect(WhoAmIClient, server.address, clientCreds("root"));
    expect(JSON.parse(String(await unary(root, "whoAmI", Buffer.alloc(0))))).toEqual({ owner: "root", role: "admin", via: "mtls" });
  });

  it("answers health checks over mTLS", async () => {
    const health = connect(HealthClient, server.address, clientCreds("alice"));
    expect(await unary(health, "check", { service: "" })).toMatchObject({ status: "SERVING" });
  });

  it("refuses a client without a certificate, or with one from another CA, at the handshake", async () => {
    for (const creds of [clientCreds(), clientCreds("mallory")]) {
      const health = connect(HealthClient, server.address, creds);
      const error = (await unary(health, "check", { service: "" }).catch((e: unknown) => e)) as ServiceError;
      expect(error.code).toBe(status.UNAVAILABLE);
    }
  });

  it("prefers a valid bearer token, and refuses an invalid one even with a good certificate", async () => {
    const alice = connect(WhoAmIClient, server.address, clientCreds("alice"));
    const withToken = (value: string) => {
      const metadata = new Metadata();
      metadata.set("authorization", value);
      return metadata;
    };
    expect(JSON.parse(String(await unary(alice, "whoAmI", Buffer.alloc(0), withToken(`Bearer ${token}`))))).toEqual({
      owner: "bob",
      role: "user",
      via: "token",
    });
    const error = (await unary(alice, "whoAmI", Buffer.alloc(0), withToken(`Bearer ${newToken()}`)).catch((e: unknown) => e)) as ServiceError;
    expect([error.code, error.details]).toEqual([status.UNAUTHENTICATED, "bearer token not recognized"]);
  });
});

describe("callerFromPeerCertificate", () => {
  const cert = (subject: Record<string, unknown>) => ({ subject }) as never;

  it("uses the subject CN, admin when listed", () => {
    expect(callerFromPeerCertificate(undefined, [])).toBeNull();
    expect(callerFromPeerCertificate(cert({ CN: "alice", O: "x" }), [])).toEqual({ owner: "alice", role: "user", via: "mtls" });
    expect(callerFromPeerCertificate(cert({ CN: "alice" }), ["alice"])).toEqual({ owner: "alice", role: "admin", via: "mtls" });
  });

  it("refuses a certificate without exactly one usable CN", () => {
    expect(() => callerFromPeerCertificate(cert({ O: "x" }), [])).toThrow(/no common name/);
    expect(() => callerFromPeerCertificate(cert({ CN: ["a", "b"] }), [])).toThrow(/several common names/);
    expect(() => callerFromPeerCertificate(cert({ CN: "a\u0001" }), [])).toThrow(/control characters/);
  });
});
