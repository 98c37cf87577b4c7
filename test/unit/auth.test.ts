import { Metadata } from "@grpc/grpc-js";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { exportJWK, exportPKCS8, exportSPKI, generateKeyPair, importPKCS8, SignJWT, type CryptoKey, type JWTPayload } from "jose";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { runToken } from "../../src/cli/token.js";
import { resolveConfig, type ConfigOverrides, type JwtSettings } from "../../src/config/config.js";
import { AgentdError } from "../../src/errors.js";
import { ANONYMOUS_ADMIN } from "../../src/runtime/caller.js";
import {
  Authenticator,
  bearerToken,
  checkBindAllowed,
  MAX_AUTHORIZATION_BYTES,
  plaintextCredentialsWarning,
} from "../../src/server/auth/authenticator.js";
import { isLoopbackHost } from "../../src/util/loopback.js";
import { JwtVerifier, looksLikeJwt } from "../../src/server/auth/jwt.js";
import { hashToken, newToken, parseTokensFile, TokenStore } from "../../src/server/auth/tokens.js";

const ISSUER = "https://issuer.test";
const AUDIENCE = "agentd";

let dir: string;
let rsa: { publicKey: CryptoKey; privateKey: CryptoKey };
let ec: { publicKey: CryptoKey; privateKey: CryptoKey };
let jwks: Server;
let jwksUrl: string;
let jwksHits = 0;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "agentd-auth-"));
  rsa = await generateKeyPair("RS256", { extractable: true });
  ec = await generateKeyPair("ES256", { extractable: true });
  const keys = [
    { ...(await exportJWK(ec.publicKey)), kid: "ec-1", alg: "ES256", use: "sig" },
    { ...(await exportJWK(rsa.publicKey)), kid: "rsa-1", alg: "RS256", use: "sig" },
  ];
  jwks = createServer((_req, res) => {
    jwksHits++;
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys }));
  });
  await new Promise<void>((resolve) => jwks.listen(0, "127.0.0.1", resolve));
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks.json`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => jwks.close(() => resolve()));
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, content: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, content);
  return p;
}

function jwtSettings(overrides: Partial<JwtSettings> = {}): JwtSettings {
  return { jwksUrl: "", publicKeyFile: "", issuer: ISSUER, audience: AUDIENCE, ownerClaim: "sub", roleClaim: "", ...overrides };
}

interface SignOptions {
  key?: CryptoKey;
  alg?: string;
  kid?: string;
  iss?: string;
  aud?: string;
  exp?: number | string;
}

async function sign(claims: JWTPayload, options: SignOptions = {}): Promise<string> {
  const jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: options.alg ?? "ES256", ...(options.kid ? { kid: options.kid } : {}) })
    .setIssuedAt()
    .setIssuer(options.iss ?? ISSUER)
    .setAudience(options.aud ?? AUDIENCE)
    .setExpirationTime(options.exp ?? "5m");
  return jwt.sign(options.key ?? ec.privateKey);
}

async function rejection(promise: Promise<unknown>): Promise<AgentdError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(AgentdError);
  return error as AgentdError;
}

function call(authorization?: string | string[], peerCN?: string) {
  const metadata = new Metadata();
  for (const value of [authorization ?? []].flat()) metadata.add("authorization", value);
  return {
    metadata,
    getAuthContext: () => (peerCN ? { transportSecurityType: "ssl", sslPeerCertificate: { subject: { CN: peerCN } } as never } : {}),
  };
}

const config = (overrides: ConfigOverrides) => resolveConfig({ dataDir: dir }, overrides);

describe("tokens file", () => {
  const alice = newToken();
  const root = newToken();
  const good = JSON.stringify({
    tokens: [
      { sha256: hashToken(alice), owner: "alice", role: "user", name: "laptop" },
      { sha256: hashToken(root).toUpperCase(), owner: "ops", role: "admin" },
    ],
  });

  it("makes tokens with a prefix and 32 random bytes, hashed as hex SHA-256", () => {
    expect(alice).toMatch(/^agd_[A-Za-z0-9_-]{43}$/);
    expect(alice).not.toBe(root);
    expect(hashToken("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  it("parses a good file and looks tokens up by their hash", () => {
    const store = new TokenStore(parseTokensFile(good, "tokens.json"));
    expect(store.size).toBe(2);
    expect(store.callerFor(alice)).toEqual({ owner: "alice", role: "user", via: "token" });
    expect(store.callerFor(root)).toEqual({ owner: "ops", role: "admin", via: "token" });
    expect(store.lookup(alice)?.name).toBe("laptop");
    expect(store.callerFor(newToken())).toBeUndefined();
    expect(store.callerFor(hashToken(alice))).toBeUndefined(); // the hash itself is not a token
    expect(store.callerFor("")).toBeUndefined();
  });

  it("names the file and the entry of a malformed one, without echoing values", () => {
    const secretish = "s3cr3t-value-not-to-echo";
    const bad = (tokens: unknown) => () => parseTokensFile(JSON.stringify({ tokens }), "/etc/agentd/tokens.json");
    const entry = { sha256: hashToken(alice), owner: "alice", role: "user" };
    expect(bad([entry, { ...entry, sha256: secretish, name: "ci" }])).toThrow(
      /^tokens file \/etc\/agentd\/tokens\.json: entry 1 \("ci"\): "sha256" must be 64 hex characters/,
    );
    expect(bad([{ ...entry, role: secretish }])).toThrow(/entry 0: "role" must be "user" or "admin"/);
    expect(bad([{ ...entry, owner: "" }])).toThrow(/entry 0: "owner" must not be empty/);
    expect(bad([{ ...entry, owner: "x".repeat(129) }])).toThrow(/"owner" must be at most 128 characters/);
    expect(bad([{ ...entry, owner: "a\nb" }])).toThrow(/"owner" must not contain control characters/);
    expect(bad([{ ...entry, hash: secretish }])).toThrow(/entry 0 has an unknown field/);
    expect(bad(["nope"])).toThrow(/entry 0 must be an object/);
    for (const make of [bad([{ ...entry, sha256: secretish }]), bad([{ ...entry, role: secretish }])]) {
      expect(make).toThrow(expect.objectContaining({ message: expect.not.stringContaining(secretish) }));
    }
  });

  it("refuses a file that is not JSON or has no tokens array, without quoting it", () => {
    expect(() => parseTokensFile('{"tokens": [ SECRET ]}', "t.json")).toThrow(/^tokens file t\.json is not valid JSON/);
    expect(() => parseTokensFile('{"tokens": [ SECRET ]}', "t.json")).not.toThrow(/SECRET/);
    expect(() => parseTokensFile('{"token": []}', "t.json")).toThrow(/must be a JSON object with a "tokens" array/);
    expect(() => parseTokensFile("[]", "t.json")).toThrow(/"tokens" array/);
  });

  it("refuses duplicate hashes, naming both entries (case-insensitively)", () => {
    const h = hashToken(alice);
    const text = JSON.stringify({
      tokens: [
        { sha256: h, owner: "alice", role: "user" },
        { sha256: hashToken(root), owner: "ops", role: "admin" },
        { sha256: h.toUpperCase(), owner: "mallory", role: "admin", name: "dup" },
      ],
    });
    expect(() => parseTokensFile(text, "t.json")).toThrow(/entry 2 \("dup"\) has the same sha256 as entry 0/);
  });

  it("loads from disk, and names a missing file", async () => {
    const p = await file("tokens.json", good);
    expect((await TokenStore.load(p)).size).toBe(2);
    await expect(TokenStore.load(path.join(dir, "missing.json"))).rejects.toThrow(/^cannot read tokens file .*missing\.json \(ENOENT\)$/);
  });
});

describe("JWT", () => {
  it("accepts a valid token from a JWKS served over HTTP, caching the keys", async () => {
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl }));
    const before = jwksHits;
    const token = await sign({ sub: "alice" }, { kid: "ec-1" });
    expect(looksLikeJwt(token)).toBe(true);
    expect(await verifier.verify(token)).toEqual({ owner: "alice", role: "user", via: "jwt" });
    expect(await verifier.verify(await sign({ sub: "bob" }, { key: rsa.privateKey, alg: "RS256", kid: "rsa-1" }))).toEqual({
      owner: "bob",
      role: "user",
      via: "jwt",
    });
    expect(jwksHits - before).toBe(1);
  });

  it("explains wrong issuer, wrong audience, expiry and a missing owner claim without echoing the token", async () => {
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl }));
    const cases: Array<[Promise<string>, RegExp]> = [
      [sign({ sub: "alice" }, { kid: "ec-1", iss: "https://evil.test" }), /^JWT issuer not accepted: expected "https:\/\/issuer\.test"$/],
      [sign({ sub: "alice" }, { kid: "ec-1", aud: "other" }), /^wrong JWT audience: expected "agentd"$/],
      [sign({ sub: "alice" }, { kid: "ec-1", exp: Math.floor(Date.now() / 1000) - 120 }), /^the JWT expired at .*; get a new one$/],
      [sign({}, { kid: "ec-1" }), /^the JWT has no "sub" claim naming the caller$/],
      [sign({ sub: "" }, { kid: "ec-1" }), /"sub" claim must not be empty/],
      [sign({ sub: 42 } as never, { kid: "ec-1" }), /"sub" claim must be a string/],
      [sign({ sub: "x".repeat(129) }, { kid: "ec-1" }), /must be at most 128 characters/],
      [sign({ sub: "alice" }, { kid: "nope" }), /no key of the JWKS matches/],
    ];
    for (const [tokenPromise, message] of cases) {
      const token = await tokenPromise;
      const error = await rejection(verifier.verify(token));
      expect(error.kind).toBe("unauthenticated");
      expect(error.message).toMatch(message);
      expect(error.message).not.toContain(token.split(".")[1]);
    }
  });

  it("tolerates 30 seconds of clock skew on exp", async () => {
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl }));
    const token = await sign({ sub: "alice" }, { kid: "ec-1", exp: Math.floor(Date.now() / 1000) - 10 });
    expect((await verifier.verify(token)).owner).toBe("alice");
  });

  it("refuses a token without exp, a forged signature, HS256 and garbage", async () => {
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl }));
    const noExp = await new SignJWT({ sub: "alice" }).setProtectedHeader({ alg: "ES256", kid: "ec-1" }).setIssuer(ISSUER).setAudience(AUDIENCE).sign(ec.privateKey);
    expect((await rejection(verifier.verify(noExp))).message).toMatch(/no "exp" claim/);

    const other = await generateKeyPair("ES256");
    const forged = await sign({ sub: "alice" }, { kid: "ec-1", key: other.privateKey });
    expect((await rejection(verifier.verify(forged))).message).toBe("the JWT's signature does not verify");

    const hs = await new SignJWT({ sub: "alice" })
      .setProtectedHeader({ alg: "HS256" })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime("5m")
      .sign(new TextEncoder().encode("x".repeat(32)));
    expect((await rejection(verifier.verify(hs))).message).toMatch(/^JWT signing algorithm not accepted/);

    expect((await rejection(verifier.verify("a.b.c"))).message).toBe("malformed JWT");
  });

  it("makes admins through the role claim (string or array) and through adminOwners", async () => {
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl, roleClaim: "https://agentd/roles" }), ["carol"]);
    const who = async (claims: JWTPayload) => verifier.verify(await sign(claims, { kid: "ec-1" }));
    expect(await who({ sub: "alice", "https://agentd/roles": "admin" })).toEqual({ owner: "alice", role: "admin", via: "jwt" });
    expect((await who({ sub: "alice", "https://agentd/roles": ["reader", "admin"] })).role).toBe("admin");
    expect((await who({ sub: "alice", "https://agentd/roles": ["reader"] })).role).toBe("user");
    expect((await who({ sub: "alice", "https://agentd/roles": "administrator" })).role).toBe("user");
    expect((await who({ sub: "carol" })).role).toBe("admin");
    // Without roleClaim, a "role" claim means nothing.
    const plain = await JwtVerifier.create(jwtSettings({ jwksUrl }));
    expect((await plain.verify(await sign({ sub: "alice", role: "admin" }, { kid: "ec-1" }))).role).toBe("user");
  });

  it("takes the owner from another claim when ownerClaim says so", async () => {
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl, ownerClaim: "email" }));
    expect((await verifier.verify(await sign({ sub: "123", email: "a@x.test" }, { kid: "ec-1" }))).owner).toBe("a@x.test");
    expect((await rejection(verifier.verify(await sign({ sub: "123" }, { kid: "ec-1" })))).message).toMatch(/no "email" claim/);
  });

  it("verifies against a PEM public key file, accepting only the algorithms of its key type", async () => {
    const rsaFile = await file("rsa.pem", await exportSPKI(rsa.publicKey));
    const verifier = await JwtVerifier.create(jwtSettings({ publicKeyFile: rsaFile }));
    expect(verifier.algorithms).toEqual(["RS256", "RS384", "RS512", "PS256"]);
    const pkcs8 = await exportPKCS8(rsa.privateKey);
    for (const alg of ["RS256", "RS512", "PS256"]) {
      // WebCrypto keys are bound to one algorithm: import the private key once per algorithm.
      const key = await importPKCS8(pkcs8, alg);
      expect(await verifier.verify(await sign({ sub: "alice" }, { key, alg }))).toEqual({ owner: "alice", role: "user", via: "jwt" });
    }
    expect((await rejection(verifier.verify(await sign({ sub: "alice" })))).message).toMatch(/algorithm not accepted; accepted: RS256/);

    const ecFile = await file("ec.pem", await exportSPKI(ec.publicKey));
    const ecVerifier = await JwtVerifier.create(jwtSettings({ publicKeyFile: ecFile }));
    expect(ecVerifier.algorithms).toEqual(["ES256"]);
    expect((await ecVerifier.verify(await sign({ sub: "alice" }))).owner).toBe("alice");

    const ed = await generateKeyPair("EdDSA", { extractable: true });
    const edVerifier = await JwtVerifier.create(jwtSettings({ publicKeyFile: await file("ed.pem", await exportSPKI(ed.publicKey)) }));
    expect((await edVerifier.verify(await sign({ sub: "alice" }, { key: ed.privateKey, alg: "EdDSA" }))).owner).toBe("alice");
  });

  it("fails start on an unreadable or unusable key file, naming it", async () => {
    await expect(JwtVerifier.create(jwtSettings({ publicKeyFile: path.join(dir, "none.pem") }))).rejects.toThrow(
      /^cannot read auth\.jwt\.publicKeyFile .*none\.pem \(ENOENT\)$/,
    );
    const junk = await file("junk.pem", "-----BEGIN PUBLIC KEY-----\nSECRETJUNK\n-----END PUBLIC KEY-----\n");
    const error = await JwtVerifier.create(jwtSettings({ publicKeyFile: junk })).catch((e: Error) => e);
    expect(String(error)).toMatch(/junk\.pem is not a PEM public key/);
    expect(String(error)).not.toContain("SECRETJUNK");
  });

  it("reports an unreachable JWKS as unavailable, not as the caller's fault", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const verifier = await JwtVerifier.create(jwtSettings({ jwksUrl: `http://127.0.0.1:${port}/jwks.json` }));
    const error = await rejection(verifier.verify(await sign({ sub: "alice" }, { kid: "ec-1" })));
    expect(error.kind).toBe("unavailable");
    expect(error.message).toMatch(/could not fetch its signing keys/);
  });
});

describe("Authenticator", () => {
  const alice = newToken();
  let tokensFile: string;
  beforeAll(async () => {
    tokensFile = await file("auth-tokens.json", JSON.stringify({ tokens: [{ sha256: hashToken(alice), owner: "alice", role: "user" }] }));
  });

  it("lets everyone in as the anonymous admin when nothing is configured", async () => {
    const auth = await Authenticator.create(config({}));
    expect(auth.required).toBe(false);
    expect(await auth.authenticate(call())).toBe(ANONYMOUS_ADMIN);
    expect(await auth.authenticate(call("Bearer whatever"))).toBe(ANONYMOUS_ADMIN);
  });

  it("requires a token once a tokens file is configured", async () => {
    const auth = await Authenticator.create(config({ auth: { tokensFile } }));
    expect(auth.required).toBe(true);
    expect(auth.describe()).toEqual(["tokens file (1 tokens)"]);
    expect(await auth.authenticate(call(`Bearer ${alice}`))).toEqual({ owner: "alice", role: "user", via: "token" });
    expect(await auth.authenticate(call(`bearer   ${alice}`))).toEqual({ owner: "alice", role: "user", via: "token" });

    const missing = await rejection(auth.authenticate(call()));
    expect(missing.kind).toBe("unauthenticated");
    expect(missing.message).toMatch(/^this server requires authentication: send 'authorization: Bearer <token>'/);

    const bad = await rejection(auth.authenticate(call(`Bearer ${newToken()}`)));
    expect([bad.kind, bad.message]).toEqual(["unauthenticated", "bearer token not recognized"]);
    expect((await rejection(auth.authenticate(call("Basic YWxpY2U6cHc=")))).message).toMatch(/scheme "Basic" is not supported/);
    expect((await rejection(auth.authenticate(call("Bearer")))).message).toMatch(/malformed authorization value/);
    expect((await rejection(auth.authenticate(call([`Bearer ${alice}`, `Bearer ${alice}`])))).message).toMatch(/one authorization value/);
  });

  it("refuses an oversize authorization value without parsing it", async () => {
    const auth = await Authenticator.create(config({ auth: { tokensFile } }));
    const huge = `Bearer ${"a".repeat(MAX_AUTHORIZATION_BYTES)}`;
    const error = await rejection(auth.authenticate(call(huge)));
    expect(error.kind).toBe("unauthenticated");
    expect(error.message).toBe(`the authorization value is ${huge.length} bytes; the limit is ${MAX_AUTHORIZATION_BYTES}`);
    expect(bearerToken(call(`Bearer ${"a".repeat(MAX_AUTHORIZATION_BYTES - 7)}`).metadata)).toHaveLength(MAX_AUTHORIZATION_BYTES - 7);
  });

  it("checks the tokens file first, then JWTs", async () => {
    const auth = await Authenticator.create(config({ auth: { tokensFile, jwt: jwtSettings({ jwksUrl }) } }));
    expect((await auth.authenticate(call(`Bearer ${alice}`))).via).toBe("token");
    expect(await auth.authenticate(call(`Bearer ${await sign({ sub: "bob" }, { kid: "ec-1" })}`))).toEqual({ owner: "bob", role: "user", via: "jwt" });
    expect((await rejection(auth.authenticate(call(`Bearer ${newToken()}`)))).message).toBe("bearer token not recognized");
    const expired = await sign({ sub: "bob" }, { kid: "ec-1", exp: Math.floor(Date.now() / 1000) - 300 });
    expect((await rejection(auth.authenticate(call(`Bearer ${expired}`)))).message).toMatch(/expired/);
  });

  it("uses a verified client certificate, but never lets it cover a bad bearer token", async () => {
    const auth = await Authenticator.create(
      config({ tls: { certFile: "c.pem", keyFile: "k.pem", clientCaFile: "ca.pem" }, auth: { tokensFile, adminOwners: ["root"] } }),
    );
    expect(auth.describe()).toEqual(["tokens file (1 tokens)", "mtls"]);
    expect(await auth.authenticate(call(undefined, "carol"))).toEqual({ owner: "carol", role: "user", via: "mtls" });
    expect(await auth.authenticate(call(undefined, "root"))).toEqual({ owner: "root", role: "admin", via: "mtls" });
    expect((await auth.authenticate(call(`Bearer ${alice}`, "carol"))).via).toBe("token");
    expect((await rejection(auth.authenticate(call(`Bearer ${newToken()}`, "carol")))).kind).toBe("unauthenticated");
    expect((await rejection(auth.authenticate(call()))).message).toMatch(/or connect with a client certificate/);
  });

  it("mTLS alone refuses bearer tokens it cannot check", async () => {
    const auth = await Authenticator.create(config({ tls: { certFile: "c.pem", keyFile: "k.pem", clientCaFile: "ca.pem" } }));
    expect(auth.required).toBe(true);
    expect((await rejection(auth.authenticate(call("Bearer abc", "carol")))).message).toMatch(/does not accept bearer tokens/);
    expect((await rejection(auth.authenticate(call()))).message).toMatch(/client certificate signed by the server's client CA/);
  });

  it("fails creation on a bad tokens file", async () => {
    const bad = await file("bad-tokens.json", JSON.stringify({ tokens: [{ sha256: "00", owner: "x", role: "user" }] }));
    await expect(Authenticator.create(config({ auth: { tokensFile: bad } }))).rejects.toThrow(/bad-tokens\.json: entry 0: "sha256"/);
  });
});

describe("checkBindAllowed", () => {
  const open = { required: false };
  const closed = { required: true };
  const bind = (host: string, insecure = false) => ({ host, port: 50051, insecure });

  it("allows loopback addresses without authentication", () => {
    for (const host of ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"]) {
      expect(isLoopbackHost(host), host).toBe(true);
      expect(() => checkBindAllowed(bind(host), open)).not.toThrow();
    }
  });

  it("refuses other addresses without authentication, saying why and what to do", () => {
    for (const host of ["0.0.0.0", "::", "[::]", "10.0.0.5", "example.com", "128.0.0.1", "localhost.example.com"]) {
      expect(isLoopbackHost(host), host).toBe(false);
      expect(() => checkBindAllowed(bind(host), open)).toThrow(
        `refusing to listen on ${host}:50051 without authentication: configure auth.tokensFile, auth.jwt or tls.clientCaFile, ` +
          "or pass --insecure if a network layer you trust authenticates callers",
      );
      expect(() => checkBindAllowed(bind(host), closed)).not.toThrow();
      expect(() => checkBindAllowed(bind(host, true), open)).not.toThrow();
    }
  });

  it("works with a real Authenticator", async () => {
    const none = await Authenticator.create(config({}));
    expect(() => checkBindAllowed(config({ host: "0.0.0.0" }), none)).toThrow(/refusing to listen on 0\.0\.0\.0:50051/);
    expect(() => checkBindAllowed(config({ host: "0.0.0.0", insecure: true }), none)).not.toThrow();
  });

  it("warns when bearer tokens would travel in clear text", () => {
    expect(plaintextCredentialsWarning(config({ host: "0.0.0.0", auth: { tokensFile: "t.json" } }))).toMatch(/clear text/);
    expect(plaintextCredentialsWarning(config({ host: "127.0.0.1", auth: { tokensFile: "t.json" } }))).toBeNull();
    expect(plaintextCredentialsWarning(config({ host: "0.0.0.0", auth: { tokensFile: "t.json" }, tls: { certFile: "c", keyFile: "k" } }))).toBeNull();
  });
});

describe("agentd token create", () => {
  it("prints a token and the tokens-file entry that accepts it", async () => {
    const log = vi.spyOn(console, "log").mockImplementation(() => {});
    try {
      expect(await runToken(["create", "--owner", "alice", "--role", "admin", "--name", "ci", "--json"])).toBe(0);
      const { token, entry } = JSON.parse(String(log.mock.calls[0]![0])) as { token: string; entry: unknown };
      const store = new TokenStore(parseTokensFile(JSON.stringify({ tokens: [entry] }), "t.json"));
      expect(store.callerFor(token)).toEqual({ owner: "alice", role: "admin", via: "token" });
      expect(entry).toMatchObject({ owner: "alice", role: "admin", name: "ci" });
    } finally {
      log.mockRestore();
    }
  });

  it("refuses a bad role or a missing owner", async () => {
    const error = vi.spyOn(console, "error").mockImplementation(() => {});
    try {
      expect(await runToken(["create", "--owner", "alice", "--role", "boss"])).toBe(2);
      expect(await runToken(["create"])).toBe(2);
      expect(String(error.mock.calls[0]![0])).toMatch(/"role" must be "user" or "admin"/);
    } finally {
      error.mockRestore();
    }
  });
});
