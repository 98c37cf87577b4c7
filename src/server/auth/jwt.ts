import { createPublicKey } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import {
  createRemoteJWKSet,
  errors,
  importSPKI,
  jwtVerify,
  type CryptoKey,
  type JWTPayload,
  type JWTVerifyGetKey,
} from "jose";
import type { JwtSettings } from "../../config/config.js";
import { AgentdError } from "../../errors.js";
import type { Caller } from "../../runtime/caller.js";
import { ownerProblem } from "./tokens.js";

/**
 * Asymmetric signature algorithms only. HMAC ("HS256"...) is never accepted: with a public key as
 * the "secret", anyone could sign tokens. "Ed25519" is the newer, fully specified name of EdDSA
 * over Ed25519.
 */
export const JWT_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"] as const;

/** Leeway for exp, nbf and iat, for clocks that differ a little between the issuer and us. */
export const CLOCK_TOLERANCE_SECONDS = 30;

/** A JWKS endpoint that does not answer within this time fails the call (UNAVAILABLE), not the server. */
const JWKS_TIMEOUT_MS = 5_000;

/** Compact JWS: three base64url parts. */
const COMPACT_JWS = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

/** Whether a bearer token has the shape of a (signed, compact) JWT; says nothing of its validity. */
export function looksLikeJwt(token: string): boolean {
  return COMPACT_JWS.test(token);
}

/** The key source failed (the JWKS endpoint is down, slow or answers garbage): not the caller's fault. */
class KeySourceError extends Error {}

/**
 * Verifies JWT bearer tokens against a JWKS URL or a PEM public key, with jose: signature (with the
 * algorithms that fit the key), issuer, audience, exp (required) and nbf with a small clock tolerance,
 * then maps the claims to a Caller.
 */
export class JwtVerifier {
  private constructor(
    private readonly settings: JwtSettings,
    private readonly adminOwners: ReadonlySet<string>,
    private readonly getKey: JWTVerifyGetKey,
    /** The algorithms accepted, narrowed to the key's type when the key is a file. */
    readonly algorithms: readonly string[],
  ) {}

  /** Reads the public key file now, so that a bad one fails server start; a JWKS is fetched on first use. */
  static async create(settings: JwtSettings, adminOwners: readonly string[] = []): Promise<JwtVerifier> {
    const admins = new Set(adminOwners);
    if (settings.jwksUrl !== "") {
      let url: URL;
      try {
        url = new URL(settings.jwksUrl);
      } catch {
        throw new Error(`auth.jwt.jwksUrl is not a valid URL`);
      }
      if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error(`auth.jwt.jwksUrl must be an http(s) URL`);
      // Keys fetched in clear text could be swapped on the way: plain http only on this machine.
      const loopback = url.hostname === "localhost" || url.hostname === "[::1]" || url.hostname.startsWith("127.");
      if (url.protocol === "http:" && !loopback) throw new Error(`auth.jwt.jwksUrl must use https (plain http only on a loopback address)`);
      const remote = createRemoteJWKSet(url, { timeoutDuration: JWKS_TIMEOUT_MS });
      const getKey: JWTVerifyGetKey = async (header, token) => {
        try {
          return await remote(header, token);
        } catch (error) {
          // A key the set does not have is the token's problem; anything else is the endpoint's.
          if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
          if (error instanceof errors.JOSENotSupported || error instanceof errors.JOSEAlgNotAllowed) throw error;
          throw new KeySourceError("cannot fetch the JWKS", { cause: error });
        }
      };
      return new JwtVerifier(settings, admins, getKey, JWT_ALGORITHMS);
    }
    const { algorithms, keys } = await importPublicKeyFile(settings.publicKeyFile);
    const getKey: JWTVerifyGetKey = async (header) => {
      const key = keys.get(header.alg ?? "");
      // jose checks `algorithms` before asking for the key, so this is only a safety net.
      if (!key) throw new errors.JOSEAlgNotAllowed(`"alg" (Algorithm) Header Parameter value not allowed`);
      return key;
    };
    return new JwtVerifier(settings, admins, getKey, algorithms);
  }

  /** The caller a JWT stands for; AgentdError("unauthenticated") with a reason a person can act on. */
  async verify(token: string): Promise<Caller> {
    const { issuer, audience } = this.settings;
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.getKey, {
        issuer,
        audience,
        algorithms: [...this.algorithms],
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        // A token without exp would be valid forever.
        requiredClaims: ["exp"],
      }));
    } catch (error) {
      throw this.explain(error);
    }
    return this.callerFrom(payload);
  }

  /** Maps verified claims to a Caller. */
  callerFrom(payload: JWTPayload): Caller {
    const { ownerClaim, roleClaim } = this.settings;
    const owner = payload[ownerClaim];
    if (owner === undefined) throw unauthenticated(`the JWT has no "${ownerClaim}" claim naming the caller`);
    const problem = ownerProblem(owner);
    if (problem) throw unauthenticated(`the JWT's "${ownerClaim}" claim ${problem}`);
    const role = roleClaim === "" ? undefined : payload[roleClaim];
    const adminByClaim = role === "admin" || (Array.isArray(role) && role.includes("admin"));
    const admin = adminByClaim || this.adminOwners.has(owner as string);
    return { owner: owner as string, role: admin ? "admin" : "user", via: "jwt" };
  }

  /** A message about the token, never quoting it (nor the claims it carries, which the caller chose). */
  private explain(error: unknown): AgentdError {
    const { issuer, audience } = this.settings;
    if (error instanceof KeySourceError) {
      return new AgentdError("unavailable", "cannot verify the JWT now: the server could not fetch its signing keys (JWKS); try again later", {
        cause: error.cause,
      });
    }
    if (error instanceof errors.JWTExpired) return unauthenticated(`the JWT expired${expiredAt(error.payload)}; get a new one`);
    if (error instanceof errors.JWTClaimValidationFailed) {
      switch (error.claim) {
        case "iss":
          return unauthenticated(`JWT issuer not accepted: expected "${issuer}"`);
        case "aud":
          return unauthenticated(`wrong JWT audience: expected "${audience}"`);
        case "nbf":
          return unauthenticated("the JWT is not valid yet (nbf is in the future); check the clocks");
        case "iat":
          return unauthenticated("the JWT was issued in the future (iat); check the clocks");
        case "exp":
          return unauthenticated(error.reason === "missing" ? 'the JWT has no "exp" claim; tokens must expire' : 'the JWT\'s "exp" claim is invalid');
        default:
          return unauthenticated(`the JWT's "${error.claim}" claim is ${error.reason === "missing" ? "missing" : "invalid"}`);
      }
    }
    if (error instanceof errors.JOSEAlgNotAllowed) {
      return unauthenticated(`JWT signing algorithm not accepted; accepted: ${this.algorithms.join(", ")}`);
    }
    if (error instanceof errors.JWKSNoMatchingKey) return unauthenticated("no key of the JWKS matches the JWT (its kid or alg)");
    if (error instanceof errors.JWKSMultipleMatchingKeys) return unauthenticated("several keys of the JWKS match the JWT; give it a kid");
    if (error instanceof errors.JWSSignatureVerificationFailed) return unauthenticated("the JWT's signature does not verify");
    if (error instanceof errors.JWTInvalid || error instanceof errors.JWSInvalid) return unauthenticated("malformed JWT");
    return unauthenticated("JWT not accepted", error);
  }
}

function unauthenticated(message: string, cause?: unknown): AgentdError {
  return new AgentdError("unauthenticated", message, cause === undefined ? {} : { cause });
}

function expiredAt(payload: JWTPayload): string {
  return typeof payload.exp === "number" && Number.isFinite(payload.exp) ? ` at ${new Date(payload.exp * 1000).toISOString()}` : "";
}

/**
 * The algorithms a PEM public key can verify, each with the key imported for it (WebCrypto keys are
 * bound to one algorithm). RSA keys accept the RS family and PS256; EC keys the algorithm of their
 * curve; Ed25519 keys EdDSA.
 */
async function importPublicKeyFile(file: string): Promise<{ algorithms: string[]; keys: Map<string, CryptoKey> }> {
  const source = path.resolve(file);
  let pem: string;
  try {
    pem = await readFile(source, "utf8");
  } catch (error) {
    throw new Error(`cannot read auth.jwt.publicKeyFile ${source} (${(error as NodeJS.ErrnoException).code ?? "unknown error"})`);
  }
  let algorithms: string[];
  try {
    const key = createPublicKey(pem);
    algorithms = algorithmsFor(key.asymmetricKeyType, key.asymmetricKeyDetails?.namedCurve);
  } catch (error) {
    if (error instanceof UnsupportedKey) throw new Error(`auth.jwt.publicKeyFile ${source}: ${error.message}`);
    throw new Error(`auth.jwt.publicKeyFile ${source} is not a PEM public key (RSA, EC P-256/P-384 or Ed25519)`);
  }
  // importSPKI wants the SubjectPublicKeyInfo form; createPublicKey also takes certificates and
  // PKCS#1, so re-export what it read.
  const spki = createPublicKey(pem).export({ type: "spki", format: "pem" }).toString();
  const keys = new Map<string, CryptoKey>();
  for (const alg of algorithms) {
    try {
      keys.set(alg, await importSPKI(spki, alg));
    } catch (error) {
      throw new Error(`auth.jwt.publicKeyFile ${source} cannot be used for ${alg}: ${(error as Error).message}`);
    }
  }
  return { algorithms, keys };
}

class UnsupportedKey extends Error {}

function algorithmsFor(type: string | undefined, curve: string | undefined): string[] {
  switch (type) {
    case "rsa":
      return ["RS256", "RS384", "RS512", "PS256"];
    case "rsa-pss":
      return ["PS256"];
    case "ec":
      if (curve === "prime256v1") return ["ES256"];
      if (curve === "secp384r1") return ["ES384"];
      throw new UnsupportedKey(`EC curve ${curve ?? "(unknown)"} is not supported; use P-256 or P-384`);
    case "ed25519":
      return ["EdDSA", "Ed25519"];
    default:
      throw new UnsupportedKey(`key type ${type ?? "(unknown)"} is not supported; use RSA, EC P-256/P-384 or Ed25519`);
  }
}
