import { status, type ClientDuplexStream } from "@grpc/grpc-js";
import { writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentdClient, tlsCredentials, type ConnectOptions } from "../src/client/client.js";
import type { JwtSettings } from "../src/config/config.js";
import { hashToken, newToken } from "../src/server/auth/tokens.js";
import { cases, collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, type TestServer } from "./helpers/harness.js";
import { makePki, type Pki } from "./helpers/pki.js";
import { clientFor, healthCheck, reflectionProto } from "./helpers/standard-clients.js";

/**
 * Authentication over the wire, with the real agentd server on a loopback port: TLS with a tokens
 * file, mutual TLS, JWT (public key file and JWKS URL), and health left open. The harness's own
 * `t.client` is plaintext without a token; every other client here is built with its credentials.
 */

const opened: AgentdClient[] = [];
function client(address: string, options: ConnectOptions = {}): AgentdClient {
  const c = new AgentdClient(address, options);
  opened.push(c);
  return c;
}

/** A deadline for calls that are expected to fail at the transport: they must not hang the test. */
const soon = () => ({ deadline: Date.now() + 5_000 });

async function writeTokensFile(dir: string, entries: Array<{ token: string; owner: string; role: "user" | "admin" }>): Promise<string> {
  const file = path.join(dir, "tokens.json");
  await writeFile(file, JSON.stringify({ tokens: entries.map(({ token, owner, role }) => ({ sha256: hashToken(token), owner, role })) }));
  return file;
}

let pki: Pki;
/** Another CA with its own "alice" and server certificate: trusted by nobody here. */
let rogue: Pki;

beforeAll(async () => {
  [pki, rogue] = await Promise.all([makePki(["alice", "bob"]), makePki(["alice"])]);
});

afterAll(async () => {
  for (const c of opened) c.close();
  await removeTempDirs();
});

describe("TLS and a tokens file", () => {
  const token = newToken();
  let t: TestServer;
  let address: string;

  beforeAll(async () => {
    const dir = await makeTempDir("agentd-e2e-tls-");
    t = await startTestServer({
      config: {
        tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile },
        auth: { tokensFile: await writeTokensFile(dir, [{ token, owner: "alice", role: "user" }]) },
      },
    });
    address = t.server.address;
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("a TLS client with a valid token creates a session owned by the token's owner, and runs a turn", async () => {
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/); // the server certificate's IP SAN is what the client checks
    const alice = client(address, { token, credentials: tlsCredentials({ caFile: pki.ca.certFile }) });
    const { session } = await alice.createSession({ config: { model: scripted([{ text: "over TLS" }]) } });
    expect(session!.owner).toBe("alice");
    expect((await alice.getSession({ sessionId: session!.id })).session!.owner).toBe("alice");
    // A server stream carries the token too.
    const events = await collect(alice.streamGenerate({ sessionId: session!.id, prompt: "hi" }));
    expect(cases(events).at(-1)).toBe("turnCompleted");
  });

  it("the same token over plaintext fails at the transport, and creates nothing", async () => {
    const before = await client(address, { token, credentials: tlsCredentials({ caFile: pki.ca.certFile }) }).listSessions({});
    const plaintext = client(address, { token });
    const error = await grpcError(plaintext.createSession({}, soon()));
    expect(error.code).toBe(status.UNAVAILABLE);
    const after = await client(address, { token, credentials: tlsCredentials({ caFile: pki.ca.certFile }) }).listSessions({});
    expect(after.sessions.map((s) => s.id)).toEqual(before.sessions.map((s) => s.id));
  });

  it("a TLS client without a token gets UNAUTHENTICATED", async () => {
    const anonymous = client(address, { credentials: tlsCredentials({ caFile: pki.ca.certFile }) });
    const error = await grpcError(anonymous.createSession({}));
    expect(error.code).toBe(status.UNAUTHENTICATED);
    expect(error.details).toContain("requires authentication");
    const wrong = client(address, { token: newToken(), credentials: tlsCredentials({ caFile: pki.ca.certFile }) });
    expect((await grpcError(wrong.listSessions({}))).code).toBe(status.UNAUTHENTICATED);
  });

  it("a client that does not trust the server's CA cannot call", async () => {
    const distrustful = client(address, { token, credentials: tlsCredentials({ caFile: rogue.ca.certFile }) });
    expect((await grpcError(distrustful.listSessions({}, soon()))).code).toBe(status.UNAVAILABLE);
  });
});

describe("mutual TLS", () => {
  let t: TestServer;
  let address: string;
  const as = (name: "alice" | "bob") =>
    client(address, { credentials: tlsCredentials({ caFile: pki.ca.certFile, ...pki.clients[name]! }) });

  beforeAll(async () => {
    t = await startTestServer({
      config: { tls: { certFile: pki.server.certFile, keyFile: pki.server.keyFile, clientCaFile: pki.ca.certFile } },
    });
    address = t.server.address;
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("the certificate's CN owns the session; another CN does not see it (NOT_FOUND)", async () => {
    const alice = as("alice");
    const bob = as("bob");
    const { session: mine } = await alice.createSession({});
    expect(mine!.owner).toBe("alice");
    const { session: theirs } = await bob.createSession({});
    expect(theirs!.owner).toBe("bob");

    const error = await grpcError(alice.getSession({ sessionId: theirs!.id }));
    expect(error.code).toBe(status.NOT_FOUND);
    expect((await grpcError(alice.destroySession({ sessionId: theirs!.id }))).code).toBe(status.NOT_FOUND);
    const listed = (await alice.listSessions({})).sessions.map((s) => s.id);
    expect(listed).toContain(mine!.id);
    expect(listed).not.toContain(theirs!.id);
    expect((await bob.getSession({ sessionId: theirs!.id })).session!.owner).toBe("bob");
  });

  it("a TLS client without a certificate cannot complete a call", async () => {
    const anonymous = client(address, { credentials: tlsCredentials({ caFile: pki.ca.certFile }) });
    expect((await grpcError(anonymous.listSessions({}, soon()))).code).toBe(status.UNAVAILABLE);
  });

  it("a certificate with CN=alice from another CA cannot complete a call", async () => {
    const mallory = client(address, { credentials: tlsCredentials({ caFile: pki.ca.certFile, ...rogue.clients.alice! }) });
    expect((await grpcError(mallory.listSessions({}, soon()))).code).toBe(status.UNAVAILABLE);
  });
});

const ISSUER = "https://issuer.test";
const AUDIENCE = "agentd";

interface SigningKey {
  privateKey: CryptoKey;
  alg: "ES256" | "RS256";
  kid?: string;
}

async function sign(key: SigningKey, claims: JWTPayload, options: { iss?: string; aud?: string; exp?: number | string } = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: key.alg, ...(key.kid ? { kid: key.kid } : {}) })
    .setIssuedAt(Math.floor(Date.now() / 1000) - 600)
    .setIssuer(options.iss ?? ISSUER)
    .setAudience(options.aud ?? AUDIENCE)
    .setExpirationTime(options.exp ?? "5m")
    .sign(key.privateKey);
}

function jwtSettings(source: Pick<JwtSettings, "jwksUrl" | "publicKeyFile">): JwtSettings {
  return { ...source, issuer: ISSUER, audience: AUDIENCE, ownerClaim: "sub", roleClaim: "role" };
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));
}

function closeHttp(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => (server?.listening ? server.close(() => resolve()) : resolve()));
}

/** Each JWT key source: a server configured with it, and the key its issuer signs with. */
const jwtSources: Array<{ name: string; setup: () => Promise<{ settings: JwtSettings; key: SigningKey; cleanup(): Promise<void> }> }> = [
  {
    name: "publicKeyFile (ES256)",
    setup: async () => {
      const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
      const publicKeyFile = path.join(await makeTempDir("agentd-e2e-jwt-"), "issuer.pub.pem");
      await writeFile(publicKeyFile, await exportSPKI(publicKey));
      return { settings: jwtSettings({ jwksUrl: "", publicKeyFile }), key: { privateKey, alg: "ES256" }, cleanup: async () => {} };
    },
  },
  {
    name: "jwksUrl (RS256, served on 127.0.0.1)",
    setup: async () => {
      const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
      const body = JSON.stringify({ keys: [{ ...(await exportJWK(publicKey)), kid: "issuer-1", alg: "RS256", use: "sig" }] });
      const jwks = createServer((_req, res) => void res.writeHead(200, { "content-type": "application/json" }).end(body));
      const port = await listen(jwks);
      return {
        settings: jwtSettings({ jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`, publicKeyFile: "" }),
        key: { privateKey, alg: "RS256", kid: "issuer-1" },
        cleanup: () => closeHttp(jwks),
      };
    },
  },
];

describe.each(jwtSources)("JWT with $name", ({ setup }) => {
  let t: TestServer;
  let key: SigningKey;
  let cleanup = async () => {};
  const withJwt = async (claims: JWTPayload, options?: Parameters<typeof sign>[2]) =>
    client(t.server.address, { token: await sign(key, claims, options) });

  beforeAll(async () => {
    const source = await setup();
    key = source.key;
    cleanup = source.cleanup;
    t = await startTestServer({ config: { auth: { jwt: source.settings } } });
  });

  afterAll(async () => {
    await t?.stop();
    await cleanup();
  });

  it("a valid token's sub owns the sessions it creates", async () => {
    const alice = await withJwt({ sub: "alice" });
    const { session } = await alice.createSession({});
    expect(session!.owner).toBe("alice");
    expect((await alice.listSessions({})).sessions.map((s) => s.id)).toContain(session!.id);
    // Another subject does not see it.
    const bob = await withJwt({ sub: "bob" });
    expect((await grpcError(bob.getSession({ sessionId: session!.id }))).code).toBe(status.NOT_FOUND);
  });

  it("refuses a wrong issuer, a wrong audience and an expired token as UNAUTHENTICATED, saying which", async () => {
    const refused = async (c: AgentdClient) => {
      const error = await grpcError(c.createSession({}));
      expect(error.code).toBe(status.UNAUTHENTICATED);
      return error.details;
    };
    const issuer = await refused(await withJwt({ sub: "alice" }, { iss: "https://elsewhere.test" }));
    expect(issuer).toMatch(/issuer/i);
    expect(issuer).toContain(ISSUER);
    const audience = await refused(await withJwt({ sub: "alice" }, { aud: "another-service" }));
    expect(audience).toMatch(/audience/i);
    expect(audience).toContain(AUDIENCE);
    // Well past the server's clock tolerance.
    const expired = await refused(await withJwt({ sub: "alice" }, { exp: Math.floor(Date.now() / 1000) - 300 }));
    expect(expired).toMatch(/expired/i);
    for (const details of [issuer, audience, expired]) expect(details).not.toMatch(/^JWT not accepted$/);
  });

  it("refuses a token signed with another key", async () => {
    const other = await generateKeyPair(key.alg, { extractable: true });
    const forged = client(t.server.address, { token: await sign({ ...key, privateKey: other.privateKey }, { sub: "alice", role: "admin" }) });
    const error = await grpcError(forged.listSessions({}));
    expect(error.code).toBe(status.UNAUTHENTICATED);
    expect(error.details).toMatch(/signature/i);
  });

  it('a token whose role claim is "admin" lists other owners\' sessions; a user\'s does not', async () => {
    const alice = await withJwt({ sub: "carol" });
    const { session } = await alice.createSession({});
    const admin = await withJwt({ sub: "ops", role: "admin" });
    expect((await admin.listSessions({ pageSize: 1000 })).sessions.map((s) => s.id)).toContain(session!.id);
    const listed = await admin.listSessions({ owner: "carol" });
    expect(listed.sessions.map((s) => s.id)).toContain(session!.id);
    expect(new Set(listed.sessions.map((s) => s.owner))).toEqual(new Set(["carol"]));
    expect((await admin.getSession({ sessionId: session!.id })).session!.owner).toBe("carol");

    const user = await withJwt({ sub: "dave", role: "user" });
    expect((await user.listSessions({ pageSize: 1000 })).sessions.map((s) => s.id)).not.toContain(session!.id);
    expect((await grpcError(user.listSessions({ owner: "carol" }))).code).toBe(status.PERMISSION_DENIED);
  });
});

describe("JWT with a JWKS endpoint that cannot be reached", () => {
  let t: TestServer;

  beforeAll(async () => {
    // A port that was free a moment ago and is closed now: connections are refused at once.
    const probe = createServer();
    const port = await listen(probe);
    await closeHttp(probe);
    t = await startTestServer({ config: { auth: { jwt: jwtSettings({ jwksUrl: `http://127.0.0.1:${port}/jwks.json`, publicKeyFile: "" }) } } });
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("fails the call as UNAVAILABLE (not UNAUTHENTICATED), and the server keeps serving", async () => {
    const { privateKey } = await generateKeyPair("ES256");
    const c = client(t.server.address, { token: await sign({ privateKey, alg: "ES256", kid: "k" }, { sub: "alice" }) });
    const error = await grpcError(c.createSession({}, soon()));
    expect(error.code).toBe(status.UNAVAILABLE);
    expect(error.details).toMatch(/JWKS|signing keys/);
    expect(await healthCheck(t.server.address, "")).toBe("SERVING");
  });
});

describe("health and reflection on a server that requires tokens", () => {
  let t: TestServer;

  beforeAll(async () => {
    const dir = await makeTempDir("agentd-e2e-health-");
    t = await startTestServer({ config: { auth: { tokensFile: await writeTokensFile(dir, [{ token: newToken(), owner: "alice", role: "user" }]) } } });
  });

  afterAll(async () => {
    await t?.stop();
  });

  it("answers health checks without credentials, while AgentRuntime calls need them", async () => {
    expect(await healthCheck(t.server.address, "")).toBe("SERVING");
    expect(await healthCheck(t.server.address, "agentd.v1.AgentRuntime")).toBe("SERVING");
    expect((await grpcError(t.client.listSessions({}))).code).toBe(status.UNAUTHENTICATED);
  });

  it("lists services through reflection without credentials (what grpcurl list does)", async () => {
    const reflection = clientFor(reflectionProto, "grpc.reflection.v1.ServerReflection", t.server.address);
    try {
      const stream = (reflection as unknown as { serverReflectionInfo(): ClientDuplexStream<object, Record<string, unknown>> }).serverReflectionInfo();
      const listed = await new Promise<Record<string, unknown>>((resolve, reject) => {
        stream.once("data", resolve);
        stream.once("error", reject);
        stream.write({ listServices: "" });
      });
      stream.end();
      const names = (listed as { listServicesResponse: { service: Array<{ name: string }> } }).listServicesResponse.service.map((s) => s.name);
      expect(names).toContain("agentd.v1.AgentRuntime");
    } finally {
      reflection.close();
    }
  });
});
