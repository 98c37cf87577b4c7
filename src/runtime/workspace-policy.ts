import { mkdirSync } from "node:fs";
import { mkdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { AgentdError, invalidArgument } from "../errors.js";
import { isInside, realpathOfNearest } from "../util/paths.js";
import { checkChars, INPUT_LIMITS } from "./input-limits.js";

/**
 * Where sessions may work on the host. A workspace a client names must lie inside one of the
 * allowed roots after symlinks are resolved (a child's may also lie inside its parent's), and never
 * overlap the data directory except under its workspaces folder. Checking creates nothing.
 */
export class WorkspacePolicy {
  private constructor(
    private readonly roots: string[],
    private readonly dataDir: string,
    private readonly defaultRoot: string,
  ) {}

  /**
   * Resolves the configured roots; the default root, <dataDir>/workspaces, is created. A root that
   * holds the data directory or one of `protectedFiles` (tokens, keys, the audit log) is refused:
   * an agent working there could read them.
   */
  static async create(dataDir: string, configuredRoots: string[], protectedFiles: string[] = []): Promise<WorkspacePolicy> {
    const defaultRoot = path.resolve(dataDir, "workspaces");
    await mkdir(defaultRoot, { recursive: true });
    const realData = await realpath(path.resolve(dataDir));
    const roots: string[] = [];
    for (const root of configuredRoots.length > 0 ? configuredRoots : [defaultRoot]) {
      let real: string;
      try {
        real = await realpath(path.resolve(root));
      } catch {
        throw new Error(`sandbox.allowedWorkspaceRoots: ${root} does not exist; create it or remove it from the list`);
      }
      if (real === realData || isInside(realData, real)) {
        throw new Error(`sandbox.allowedWorkspaceRoots: ${root} holds the data directory ${realData}; a workspace there could reach the stored sessions`);
      }
      for (const file of protectedFiles) {
        const resolved = (await realpath(path.resolve(file)).catch(() => null)) ?? path.resolve(file);
        if (isInside(resolved, real)) throw new Error(`sandbox.allowedWorkspaceRoots: ${root} holds ${file}; a workspace there could read it`);
      }
      roots.push(real);
    }
    return new WorkspacePolicy(roots, realData, await realpath(defaultRoot));
  }

  /**
   * Makes a session's default workspace if it does not exist yet: sessions get theirs when a tool
   * first needs it, not at creation (most never run a file tool). Other workspaces are left alone.
   */
  async ensure(workspace: string): Promise<void> {
    if (path.dirname(workspace) !== this.defaultRoot) return;
    // Synchronously: almost always it exists, and the check is one quick syscall.
    mkdirSync(workspace, { recursive: true, mode: 0o700 });
  }

  /** The default workspace of a new session. */
  defaultFor(sessionId: string): string {
    return path.join(this.defaultRoot, sessionId);
  }

  /**
   * Checks a workspace a client named and returns it resolved. PERMISSION_DENIED outside the roots
   * (or the parent's workspace, for a child); INVALID_ARGUMENT when it is not a usable path.
   */
  async check(requested: string, parentWorkspace?: string): Promise<string> {
    checkChars("workspace", requested, INPUT_LIMITS.workspaceChars);
    if (!path.isAbsolute(requested)) throw invalidArgument("workspace must be an absolute path");
    const real = await realpathOfNearest(path.resolve(requested)).catch((error: NodeJS.ErrnoException) => {
      throw invalidArgument(`workspace ${requested} cannot be used (${error.code ?? "unreadable"}${error.code === "EDANGLING" ? `: ${error.message}` : ""})`);
    });
    // A parent's workspace counts only while it is itself allowed (a restored session's may not be).
    const parent =
      parentWorkspace !== undefined && (await this.allows(parentWorkspace)) ? await realpathOfNearest(parentWorkspace) : undefined;
    const allowed =
      this.roots.some((root) => isInside(real, root)) || (parent !== undefined && (real === parent || isInside(real, parent)));
    if (!allowed || !this.clearOfData(real)) {
      const where = parent === undefined ? "" : ` or inside the parent's workspace`;
      throw new AgentdError(
        "permission_denied",
        `workspace ${requested} is not allowed: it must lie inside one of the server's workspace roots (${this.roots.join(", ")})${where}, symlinks resolved`,
      );
    }
    // Only now, inside the roots: outside them, the answer would tell what exists on the host.
    if (await stat(real).then((stats) => !stats.isDirectory(), () => false)) {
      throw invalidArgument(`workspace ${requested} exists and is not a directory`);
    }
    return real;
  }

  /** Whether a session's workspace (one restored from an older configuration, say) is still allowed. */
  async allows(workspace: string): Promise<boolean> {
    const real = await realpathOfNearest(workspace).catch(() => null);
    return real !== null && this.clearOfData(real) && (this.roots.some((root) => isInside(real, root)) || isInside(real, this.defaultRoot));
  }

  private clearOfData(real: string): boolean {
    if (real === this.dataDir || isInside(this.dataDir, real)) return false;
    return !isInside(real, this.dataDir) || isInside(real, this.defaultRoot);
  }
}
