import { ServerCredentials } from "@grpc/grpc-js";
import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { PeerCertificate } from "node:tls";
import type { RuntimeConfig } from "../../config/config.js";
import { AgentdError } from "../../errors.js";
import type { Caller } from "../../runtime/caller.js";
import { ownerProblem } from "./tokens.js";

export type TlsSettings = RuntimeConfig["tls"];

/**
 * The credentials of the gRPC port: plaintext without tls.certFile; TLS with it; and with
 * tls.clientCaFile, mutual TLS: the handshake fails for a client without a certificate signed by
 * that CA. Files are read and checked now, so a bad one fails server start with a message naming
 * the file (never its content).
 */
export function createServerCredentials(tls: TlsSettings): ServerCredentials {
  if (tls.certFile === "") return ServerCredentials.createInsecure();
  const cert = readPem("tls.certFile", tls.certFile);
  const key = readPem("tls.keyFile", tls.keyFile);
  const ca = tls.clientCaFile === "" ? null : readPem("tls.clientCaFile", tls.clientCaFile);

  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    throw new Error(`tls.certFile ${path.resolve(tls.certFile)} is not a PEM certificate`);
  }
  try {
    if (!certificate.checkPrivateKey(createPrivateKey(key))) {
      throw new Error(`tls.keyFile ${path.resolve(tls.keyFile)} is not the private key of the certificate in tls.certFile`);
    }
  } catch (error) {
    if (error instanceof Error && error.message.startsWith("tls.keyFile")) throw error;
    throw new Error(`tls.keyFile ${path.resolve(tls.keyFile)} is not an unencrypted PEM private key`);
  }
  if (ca) {
    try {
      new X509Certificate(ca);
    } catch {
      throw new Error(`tls.clientCaFile ${path.resolve(tls.clientCaFile)} is not a PEM certificate`);
    }
  }
  return ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], ca !== null);
}

function readPem(setting: string, file: string): Buffer {
  const source = path.resolve(file);
  try {
    return readFileSync(source);
  } catch (error) {
    throw new Error(`cannot read ${setting} ${source} (${(error as NodeJS.ErrnoException).code ?? "unknown error"})`);
  }
}

/**
 * The caller a verified client certificate stands for: its subject's common name (CN) is the owner,
 * an admin when listed in auth.adminOwners. Only the CN is used, not the subject alternative names:
 * one well-defined field is easier to reason about when issuing client certificates. Returns null
 * when there is no verified certificate. grpc-js only exposes the peer certificate of a connection
 * whose chain verified against tls.clientCaFile.
 */
export function callerFromPeerCertificate(certificate: PeerCertificate | undefined | null, adminOwners: readonly string[]): Caller | null {
  if (!certificate) return null;
  const cn: unknown = certificate.subject?.CN;
  // A subject with several CNs is an array: ambiguous, so refused rather than guessed.
  if (Array.isArray(cn)) {
    throw new AgentdError("unauthenticated", "the client certificate's subject has several common names (CN); it must have one");
  }
  if (cn === undefined || cn === "") {
    throw new AgentdError("unauthenticated", "the client certificate's subject has no common name (CN) to name the caller");
  }
  const problem = ownerProblem(cn);
  if (problem) throw new AgentdError("unauthenticated", `the client certificate's common name (CN) ${problem}`);
  const owner = cn as string;
  return { owner, role: adminOwners.includes(owner) ? "admin" : "user", via: "mtls" };
}
