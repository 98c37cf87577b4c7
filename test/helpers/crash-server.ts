import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { waitFor } from "./harness.js";

const AGENTD = path.resolve(import.meta.dirname, "../../bin/agentd");

/** A real agentd server in a child process, on a loopback port, with a file store in `dataDir`. */
export interface ServerProcess {
  address: string;
  pid: number;
  /** What it wrote to stdout and stderr so far. */
  output(): string;
  /** SIGKILL: no shutdown, no flush, like a power cut for the process. */
  kill(): Promise<void>;
}

export async function spawnServer(dataDir: string, args: string[] = []): Promise<ServerProcess> {
  const child: ChildProcess = spawn(AGENTD, ["serve", "--port", "0", "--data-dir", dataDir, "--log-format", "json", ...args], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const kill = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
  };
  try {
    const address = await waitFor(() => {
      if (child.exitCode !== null) throw new Error(`agentd exited with ${child.exitCode}: ${out}`);
      return /"address":"([^"]+)","dataDir"/.exec(out)?.[1];
    }, 20_000);
    return { address, pid: child.pid!, output: () => out, kill };
  } catch (error) {
    await kill();
    throw error;
  }
}
