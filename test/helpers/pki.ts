import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { makeTempDir } from "./harness.js";

const run = promisify(execFile);

const OPENSSL_CONFIG = `
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
`;

/** A PEM certificate and its unencrypted PEM private key. */
export interface CertFiles {
  certFile: string;
  keyFile: string;
}

export interface Pki {
  /** The temp dir holding every file (removed by the harness's removeTempDirs). */
  dir: string;
  /** The self-signed CA (CN=test-ca): trust it for the server, or use it as tls.clientCaFile. */
  ca: CertFiles;
  /** CN=localhost, SAN DNS:localhost and IP:127.0.0.1, signed by the CA. */
  server: CertFiles;
  /** Client certificates (extendedKeyUsage clientAuth) signed by the CA, by subject CN. */
  clients: Record<string, CertFiles>;
}

/**
 * A CA, a server certificate and client certificates for the given CNs, made with openssl (EC P-256
 * keys, valid one day) in a new temp dir. Every call makes a new, unrelated CA: a second call gives
 * certificates the first CA does not trust (e.g. a rogue "alice").
 */
export async function makePki(clientCNs: readonly string[] = []): Promise<Pki> {
  for (const cn of clientCNs) {
    if (!/^[A-Za-z0-9][\w.-]{0,63}$/.test(cn)) throw new Error(`makePki: CN "${cn}" must be a plain name (it names files)`);
  }
  if (new Set(clientCNs).size !== clientCNs.length) throw new Error("makePki: duplicate client CN");
  const dir = await makeTempDir("agentd-pki-");
  const file = (name: string) => path.join(dir, name);
  const files = (name: string): CertFiles => ({ certFile: file(`${name}.pem`), keyFile: file(`${name}.key`) });
  const openssl = (...args: string[]) => run("openssl", args, { cwd: dir });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await writeFile(file("openssl.cnf"), OPENSSL_CONFIG);

  await openssl("req", "-x509", "-config", "openssl.cnf", "-extensions", "ca", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca");
  const leaf = async (name: string, cn: string, kind: "server" | "client") => {
    await openssl("req", "-new", "-config", "openssl.cnf", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${cn}`);
    // A random serial per certificate: -CAcreateserial would have parallel signings race on ca.srl.
    await openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", `0x${randomBytes(8).toString("hex")}`,
      "-out", `${name}.pem`, "-days", "1", "-extfile", "openssl.cnf", "-extensions", kind);
  };
  await Promise.all([leaf("server", "localhost", "server"), ...clientCNs.map((cn) => leaf(`client-${cn}`, cn, "client"))]);
  return {
    dir,
    ca: files("ca"),
    server: files("server"),
    clients: Object.fromEntries(clientCNs.map((cn) => [cn, files(`client-${cn}`)])),
  };
}
