import { isLoopbackHost } from "../../util/loopback.js";
import type { Metadata } from "@grpc/grpc-js";
import type { PeerCertificate } from "node:tls";
import type { RuntimeConfig } from "../../config/config.js";
import { AgentdError } from "../../errors.js";
import { ANONYMOUS_ADMIN, type Caller } from "../../runtime/caller.js";
import { JwtVerifier, looksLikeJwt } from "./jwt.js";
import { callerFromPeerCertificate } from "./tls.js";
import { TokenStore } from "./tokens.js";

/** An authorization value longer than this is refused before it is parsed. */
export const MAX_AUTHORIZATION_BYTES = 8 * 1024;

/** RFC 6750 b64token: the characters a bearer token may have. */
const BEARER = /^Bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

/** The part of a call the authenticator reads; grpc-js server calls have both (AuthContext is structurally this). */
export interface AuthenticatedCall {
  metadata: Metadata;
  getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: PeerCertificate } | null;
}

const HOW_TO =
  "send 'authorization: Bearer <token>' metadata (a token from the server's tokens file, or a JWT from the configured issuer)";

/**
 * The edge's one authentication step: every AgentRuntime call goes through authenticate() before its
 * handler runs (health and reflection do not). With nothing configured, every caller is the
 * anonymous admin. Otherwise a call must carry a bearer token (checked against the tokens file,
 * then as a JWT) or come over a connection with a verified client certificate (mTLS).
 */
export class Authenticator {
  private constructor(
    private readonly tokens: TokenStore | null,
    private readonly jwt: JwtVerifier | null,
    private readonly mtls: boolean,
    private readonly adminOwners: readonly string[],
  ) {}

  /** Loads the tokens file and the JWT key; a bad file fails here, at server start. */
  static async create(config: RuntimeConfig): Promise<Authenticator> {
    const { auth, tls } = config;
    const tokens = auth.tokensFile === "" ? null : await TokenStore.load(auth.tokensFile);
    const jwt = auth.jwt ? await JwtVerifier.create(auth.jwt, auth.adminOwners) : null;
    return new Authenticator(tokens, jwt, tls.clientCaFile !== "", [...auth.adminOwners]);
  }

  /** Whether callers must authenticate (any of auth.tokensFile, auth.jwt or tls.clientCaFile is set). */
  get required(): boolean {
    return this.tokens !== null || this.jwt !== null || this.mtls;
  }

  /** For the startup log: how callers may authenticate, e.g. ["tokens file (3 tokens)", "jwt", "mtls"]. */
  describe(): string[] {
    const methods: string[] = [];
    if (this.tokens) methods.push(`tokens file (${this.tokens.size} tokens)`);
    if (this.jwt) methods.push("jwt");
    if (this.mtls) methods.push("mtls");
    return methods;
  }

  /**
   * Who is calling. Rejects with AgentdError("unauthenticated") (UNAUTHENTICATED at the edge), or
   * "unavailable" when a JWKS endpoint cannot be reached to check a JWT.
   */
  async authenticate(call: AuthenticatedCall): Promise<Caller> {
    if (!this.required) return ANONYMOUS_ADMIN;
    const token = bearerToken(call.metadata);
    if (token !== undefined) {
      // A bearer token that was sent must be valid, even when the connection also has a client
      // certificate: falling back to the certificate would let a bad or revoked token pass silently
      // and make it unclear which identity a call runs as. A valid token wins over the certificate:
      // it is the more specific credential, chosen for this call.
      return this.verifyBearer(token);
    }
    if (this.mtls) {
      const caller = callerFromPeerCertificate(call.getAuthContext()?.sslPeerCertificate, this.adminOwners);
      if (caller) return caller;
    }
    throw new AgentdError("unauthenticated", `this server requires authentication: ${this.methodsHint()}`);
  }

  private async verifyBearer(token: string): Promise<Caller> {
    const fromFile = this.tokens?.callerFor(token);
    if (fromFile) return fromFile;
    if (this.jwt && looksLikeJwt(token)) return this.jwt.verify(token);
    if (!this.tokens && !this.jwt) {
      throw new AgentdError("unauthenticated", "this server does not accept bearer tokens; authenticate with a client certificate");
    }
    throw new AgentdError("unauthenticated", this.tokens ? "bearer token not recognized" : "bearer token is not a JWT");
  }

  private methodsHint(): string {
    if (!this.tokens && !this.jwt) return "connect with a client certificate signed by the server's client CA";
    return this.mtls ? `${HOW_TO}, or connect with a client certificate signed by the server's client CA` : HOW_TO;
  }
}

/**
 * The bearer token of a call, undefined when it has no authorization metadata. Malformed or
 * oversize values are refused without being parsed or echoed.
 */
export function bearerToken(metadata: Metadata): string | undefined {
  const values = metadata.get("authorization");
  if (values.length === 0) return undefined;
  if (values.length > 1) throw new AgentdError("unauthenticated", "send one authorization value, not several");
  const value = values[0]!;
  const size = typeof value === "string" ? Buffer.byteLength(value, "utf8") : value.length;
  if (size > MAX_AUTHORIZATION_BYTES) {
    throw new AgentdError("unauthenticated", `the authorization value is ${size} bytes; the limit is ${MAX_AUTHORIZATION_BYTES}`);
  }
  if (typeof value !== "string") throw new AgentdError("unauthenticated", "the authorization value must be text");
  const match = BEARER.exec(value);
  if (!match) {
    const scheme = /^[A-Za-z][A-Za-z0-9._~+-]{0,31}(?= |$)/.exec(value)?.[0];
    throw new AgentdError(
      "unauthenticated",
      scheme && scheme.toLowerCase() !== "bearer"
        ? `authorization scheme "${scheme}" is not supported; use 'Bearer <token>'`
        : "malformed authorization value; use 'Bearer <token>'",
    );
  }
  return match[1]!;
}

/**
 * Refuses to serve a non-loopback address without authentication, unless config.insecure says a
 * trusted network layer authenticates callers. Throws an Error saying why and what to do.
 */
export function checkBindAllowed(config: Pick<RuntimeConfig, "host" | "port" | "insecure">, authenticator: Pick<Authenticator, "required">): void {
  if (authenticator.required || config.insecure || isLoopbackHost(config.host)) return;
  throw new Error(
    `refusing to listen on ${config.host}:${config.port} without authentication: configure auth.tokensFile, auth.jwt or ` +
      `tls.clientCaFile, or pass --insecure if a network layer you trust authenticates callers`,
  );
}

/**
 * A warning for the startup log when bearer tokens would cross the network in clear text (a
 * non-loopback address without tls.certFile); null otherwise.
 */
export function plaintextCredentialsWarning(
  config: Pick<RuntimeConfig, "host" | "port" | "tls" | "auth">,
): string | null {
  const bearer = config.auth.tokensFile !== "" || config.auth.jwt !== null;
  if (!bearer || config.tls.certFile !== "" || isLoopbackHost(config.host)) return null;
  return `bearer tokens reach ${config.host}:${config.port} in clear text: set tls.certFile and tls.keyFile, or terminate TLS in front of the server`;
}
