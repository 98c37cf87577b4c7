import { execFile } from "node:child_process";
import { mkdir, rm, symlink } from "node:fs/promises";
import { promisify } from "node:util";
import path from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { Scope } from "../src/gen/agentd/v1/runtime.js";
import { skillText, writeSkill } from "./skills/helpers.js";
import { cases, collect, grpcError, makeTempDir, removeTempDirs, scripted, startTestServer, type TestServer } from "./helpers/harness.js";

/** A SKILL.md text, in the argument order the tests read best. */
const skill = (name: string, description: string, body: string, extra = "") => skillText(name, description, extra, body);

const servers: TestServer[] = [];
afterAll(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  await removeTempDirs();
});

async function serverWithSkills(): Promise<{ t: TestServer; skillsDir: string }> {
  const dataDir = await makeTempDir();
  const skillsDir = path.join(dataDir, "skills");
  await writeSkill(skillsDir, "release-notes", skill("release-notes", "Write release notes from merged changes", "Group changes by kind. See template.md.", "license: MIT\n"), {
    "template.md": "## Added\n## Fixed\n",
  });
  await writeSkill(skillsDir, "deploy", skill("deploy", "Deploy the service", "Run the deploy script.", "allowed-tools: bash(./deploy.sh:*)\n"));
  await writeSkill(skillsDir, "broken", "---\nname: broken\ndescription: [unclosed\n---\nbody\n");
  const t = await startTestServer({ dataDir });
  servers.push(t);
  return { t, skillsDir };
}

describe("skills over the wire", () => {
  it("loads the global folder at start-up, reporting a malformed skill with its file and line", async () => {
    const { t } = await serverWithSkills();
    const { skills, problems } = await t.client.listSkills({});
    expect(skills.map((s) => s.name)).toEqual(["deploy", "release-notes"]);
    expect(skills.every((s) => s.scope === Scope.SCOPE_GLOBAL)).toBe(true);
    expect(problems).toHaveLength(1);
    expect(problems[0]!.file).toMatch(/broken[/\\]SKILL\.md$/);
    expect(problems[0]!.line).toBeGreaterThanOrEqual(2);
    const deploy = skills.find((s) => s.name === "deploy")!;
    expect(deploy.hasAllowedTools).toBe(true);
    expect(deploy.allowedTools).toEqual(["bash(./deploy.sh:*)"]);
    const { body } = await t.client.getSkill({ name: "release-notes" });
    expect(body).toContain("Group changes by kind");
  });

  it("ReloadSkills picks up a new skill and keeps the good ones when one is bad", async () => {
    const { t, skillsDir } = await serverWithSkills();
    await writeSkill(skillsDir, "triage", skill("triage", "Triage a bug report", "Ask for a reproduction."));
    const { skills, problems } = await t.client.reloadSkills({});
    expect(skills.map((s) => s.name)).toEqual(["deploy", "release-notes", "triage"]);
    expect(problems.map((p) => path.basename(path.dirname(p.file)))).toEqual(["broken"]);
  });

  it("puts only the catalogue in the system prompt and serves bodies and files through the skill tool", async () => {
    const { t } = await serverWithSkills();
    const { session } = await t.client.createSession({
      config: {
        systemPrompt: "Base prompt.",
        model: scripted([
          { text: "PROMPT<<{{system_prompt}}>> TOOLS<<{{tools}}>>" },
          { toolCalls: [{ name: "skill", arguments: { name: "release-notes" } }] },
          { toolCalls: [{ name: "skill", arguments: { name: "release-notes", file: "template.md" } }] },
          { toolCalls: [{ name: "skill", arguments: { name: "release-notes", file: "../deploy/SKILL.md" } }] },
          { text: "done" },
        ]),
      },
    });
    const first = await t.client.generate({ sessionId: session!.id, prompt: "what can you do?" });
    const text = first.result!.text;
    expect(text).toContain("Base prompt.");
    expect(text).toContain("release-notes");
    expect(text).toContain("Write release notes from merged changes");
    // Progressive disclosure: the body is not in the prompt until the model asks for it.
    expect(text).not.toContain("Group changes by kind");
    expect(text).toMatch(/TOOLS<<[^>]*\bskill\b/);

    const events = await collect(t.client.streamGenerate({ sessionId: session!.id, prompt: "write notes" }));
    const results = events.filter((e) => e.payload?.$case === "toolResult").map((e) => (e.payload as { toolResult: { output: string; isError: boolean } }).toolResult);
    expect(results[0]!.isError).toBe(false);
    expect(results[0]!.output).toContain("Group changes by kind");
    expect(results[1]!.output).toContain("## Added");
    expect(results[2]!.isError).toBe(true);
    expect(results[2]!.output).not.toContain("allowed-tools");
    expect(cases(events).at(-1)).toBe("turnCompleted");
  });

  it("session skills shadow global ones, are inherited by children, and survive a restart", async () => {
    const { t } = await serverWithSkills();
    const { session } = await t.client.createSession({});
    const id = session!.id;
    const loaded = await t.client.loadSkill({
      sessionId: id,
      source: { $case: "content", content: skill("deploy", "Deploy to staging only", "Use the staging script.") },
    });
    expect(loaded.skill!.scope).toBe(Scope.SCOPE_SESSION);
    const mine = await t.client.listSkills({ sessionId: id });
    expect(mine.skills.find((s) => s.name === "deploy")).toMatchObject({ scope: Scope.SCOPE_SESSION, description: "Deploy to staging only" });
    expect((await t.client.getSkill({ sessionId: id, name: "deploy" })).body).toContain("staging script");

    const { session: child } = await t.client.createChildSession({ parentId: id });
    const theirs = await t.client.listSkills({ sessionId: child!.id });
    expect(theirs.skills.find((s) => s.name === "deploy")).toMatchObject({ scope: Scope.SCOPE_INHERITED, sessionId: id });

    const duplicate = await grpcError(t.client.loadSkill({ sessionId: id, source: { $case: "content", content: skill("deploy", "again", "x") } }));
    expect(duplicate.code).toBe(status.ALREADY_EXISTS);

    await t.server.close();
    const again = await startTestServer({ dataDir: t.dataDir });
    servers.push(again);
    const restored = await again.client.listSkills({ sessionId: id });
    expect(restored.skills.find((s) => s.name === "deploy")).toMatchObject({ scope: Scope.SCOPE_SESSION, description: "Deploy to staging only" });
    await again.client.unloadSkill({ sessionId: id, name: "deploy" });
    const after = await again.client.listSkills({ sessionId: id });
    expect(after.skills.find((s) => s.name === "deploy")!.scope).toBe(Scope.SCOPE_GLOBAL);
  });

  it("refuses malformed skills with the line, and paths outside the workspace and allowed roots", async () => {
    const { t } = await serverWithSkills();
    const { session } = await t.client.createSession({});
    const id = session!.id;
    const bad = await grpcError(
      t.client.loadSkill({ sessionId: id, source: { $case: "content", content: "---\nname: Bad_Name\ndescription: x\n---\nbody\n" } }),
    );
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(bad.details).toMatch(/:2: /);

    const outside = await makeTempDir("agentd-outside-");
    await writeSkill(outside, "secret", skill("secret", "not yours", "TOP SECRET BODY"));
    const denied = await grpcError(t.client.loadSkill({ sessionId: id, source: { $case: "path", path: path.join(outside, "secret") } }));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect(denied.details).not.toContain("TOP SECRET");

    // A symlink inside the workspace that leads outside is judged where it leads.
    await mkdir(session!.workspace, { recursive: true });
    await symlink(path.join(outside, "secret"), path.join(session!.workspace, "link"));
    const viaLink = await grpcError(t.client.loadSkill({ sessionId: id, source: { $case: "path", path: "link" } }));
    expect(viaLink.code).toBe(status.PERMISSION_DENIED);

    // A folder inside the workspace loads, and its files are readable through the tool.
    await writeSkill(session!.workspace, "local", skill("local", "A skill of this project", "Local body."));
    const local = await t.client.loadSkill({ sessionId: id, source: { $case: "path", path: "local" } });
    expect(local.skill!.folder).toContain("local");

    const notAdmin = await grpcError(t.client.unloadSkill({ sessionId: id, name: "release-notes" }));
    expect(notAdmin.code).toBe(status.NOT_FOUND);
  });

  it("does not follow a skill folder swapped for a link after loading, and refuses FIFOs without blocking", async () => {
    const { t } = await serverWithSkills();
    const { session } = await t.client.createSession({
      config: {
        limits: { toolTimeoutMs: 2000 },
        model: scripted(
          [
            { toolCalls: [{ name: "skill", arguments: { name: "mine", file: "etc/hostname" } }] },
            { toolCalls: [{ name: "skill", arguments: { name: "mine" } }] },
            { text: "done" },
          ],
          true,
        ),
      },
    });
    const id = session!.id;
    const folder = await writeSkill(session!.workspace, "mine", skill("mine", "Mine", "My body."), { "notes.md": "notes" });
    await t.client.loadSkill({ sessionId: id, source: { $case: "path", path: "mine" } });
    await rm(folder, { recursive: true });
    await symlink("/", folder);
    const swapped = await collect(t.client.streamGenerate({ sessionId: id, prompt: "read" }));
    const results = swapped.filter((e) => e.payload?.$case === "toolResult").map((e) => (e.payload as { toolResult: { output: string; isError: boolean } }).toolResult);
    expect(results[0]!.isError).toBe(true);
    expect(results[0]!.output).toContain("changed since the skill was loaded");
    expect(results[1]!.output).toContain("My body.");
    expect(results[1]!.output).not.toMatch(/\betc\b|\bproc\b/);

    await rm(folder);
    const fresh = await writeSkill(session!.workspace, "piped", skill("piped", "Has a FIFO", "Body."));
    await promisify(execFile)("mkfifo", [path.join(fresh, "fifo")]);
    await t.client.loadSkill({ sessionId: id, source: { $case: "path", path: "piped" } });
    await t.client.configureSession({
      sessionId: id,
      config: { model: scripted([{ toolCalls: [{ name: "skill", arguments: { name: "piped", file: "fifo" } }] }, { text: "done" }], true) },
    });
    for (let i = 0; i < 6; i++) {
      const turn = await collect(t.client.streamGenerate({ sessionId: id, prompt: "read the fifo" }));
      const result = turn.find((e) => e.payload?.$case === "toolResult")!.payload as { toolResult: { output: string; isError: boolean } };
      expect(result.toolResult.isError).toBe(true);
      expect(result.toolResult.output).toContain("not a regular file");
    }
    // The thread pool is not held: the server still reads files.
    await t.client.createSession({});
    const fifoSkill = await grpcError(t.client.loadSkill({ sessionId: id, source: { $case: "content", content: "x" } }));
    expect(fifoSkill.code).toBe(status.INVALID_ARGUMENT);
  });

  it("lets a skill's allowed-tools run without asking only after the model has read it", async () => {
    const { t } = await serverWithSkills();
    const { session } = await t.client.createSession({
      config: {
        confirmation: { enabled: true, timeoutMs: 300 },
        model: scripted([
          { toolCalls: [{ name: "bash", arguments: { command: "./deploy.sh --dry-run" } }] },
          { text: "asked" },
          { toolCalls: [{ name: "skill", arguments: { name: "deploy" } }] },
          { toolCalls: [{ name: "bash", arguments: { command: "./deploy.sh --dry-run" } }] },
          { text: "ran" },
        ]),
      },
    });
    const id = session!.id;
    const before = await collect(t.client.streamGenerate({ sessionId: id, prompt: "deploy" }));
    expect(cases(before)).toContain("confirmationRequired");
    const after = await collect(t.client.streamGenerate({ sessionId: id, prompt: "deploy, reading the skill first" }));
    expect(cases(after)).not.toContain("confirmationRequired");
    const bash = after.filter((e) => e.payload?.$case === "toolResult").map((e) => (e.payload as { toolResult: { name: string; output: string } }).toolResult)[1]!;
    expect(bash.name).toBe("bash");
    expect(bash.output).toContain("exit code");
  });
});
