import path from "node:path";
import { parseFrontMatter } from "../definitions/front-matter.js";
import type { DefinitionProblem } from "../definitions/problems.js";
import type { Logger } from "../logging.js";
import { RuleSet } from "../policy/rules.js";
import type { Session } from "../session/session.js";
import { allowedToolRules, invalidAllowedTool } from "../skills/allowed-tools.js";
import { skillCatalogue } from "../skills/catalogue.js";
import { loadSkillFolder, loadSkillsDir } from "../skills/load.js";
import { parseSkill } from "../skills/parse.js";
import type { SkillLookup } from "../skills/skill-tool.js";
import type { Skill } from "../skills/types.js";
import { DefinitionsService, type DefinitionKind, type Parsed } from "./definitions-service.js";

/** A skill whose allowed-tools are not valid permission rules is malformed: refused whole, with the line. */
function checked(parsed: { skill: Skill } | { problem: DefinitionProblem }, file: string): Parsed<Skill> {
  if ("problem" in parsed) return parsed;
  const { skill } = parsed;
  const why = skill.allowedTools ? invalidAllowedTool(skill.allowedTools) : null;
  if (why) {
    const parsedText = parseFrontMatter(skill.text);
    const line = "frontMatter" in parsedText ? parsedText.frontMatter.fieldLine("allowed-tools") : 1;
    return { problem: { file, line, message: `allowed-tools: ${why}` } };
  }
  return { item: skill, stored: { name: skill.name, text: skill.text, dir: skill.dir } };
}

const SKILLS: DefinitionKind<Skill> = {
  noun: "skill",
  list: "skills",
  rootsSetting: "skills.allowedRoots",
  loadDir: async (root) => {
    const { items, problems } = await loadSkillsDir(root);
    const good: Skill[] = [];
    for (const skill of items) {
      const result = checked({ skill }, path.join(skill.dir ?? root, "SKILL.md"));
      if ("item" in result) good.push(result.item);
      else problems.push(result.problem);
    }
    return { items: good, problems };
  },
  loadPath: async (dir) => checked(await loadSkillFolder(dir), path.join(dir, "SKILL.md")),
  parse: (stored, file) => {
    const file_ = stored.dir ? path.join(stored.dir, "SKILL.md") : file;
    return checked(parseSkill(stored.text, { file: file_, folderName: stored.dir ? path.basename(stored.dir) : null, dir: stored.dir }), file_);
  },
};

/**
 * Skills: the registry (global folder, per session, inherited), the catalogue a session's system
 * prompt gets, and what a skill the model has read allows. A skill's allowed-tools become allow
 * rules for the rest of the turn in which the model read it with the `skill` tool: they let those
 * calls run without asking, but deny and ask rules still win over them.
 */
export class SkillsService implements SkillLookup {
  readonly registry: DefinitionsService<Skill>;
  /** Skills the model has read, per running turn ("<session>/<turn>"). */
  private readonly active = new Map<string, Skill[]>();
  private readonly ruleCache = new WeakMap<RuleSet, { key: string; rules: RuleSet }>();

  constructor(options: {
    dir: string;
    allowedRoots: string[];
    lineage: (session: Session) => Session[];
    find: (sessionId: string) => Session | undefined;
    logger: Logger;
  }) {
    this.registry = new DefinitionsService(SKILLS, options);
    this.find = options.find;
  }

  private readonly find: (sessionId: string) => Session | undefined;

  skillsFor(sessionId: string): readonly Skill[] {
    const session = this.find(sessionId);
    return session ? this.registry.visible(session).map((v) => v.item) : [];
  }

  activated(sessionId: string, turnId: string, skill: Skill): void {
    const key = `${sessionId}/${turnId}`;
    const list = this.active.get(key) ?? [];
    if (!list.some((s) => s.name === skill.name)) list.push(skill);
    this.active.set(key, list);
  }

  endTurn(sessionId: string, turnId: string): void {
    this.active.delete(`${sessionId}/${turnId}`);
  }

  /** The catalogue for a session's system prompt: names and descriptions only. */
  catalogue(session: Session): string {
    return skillCatalogue(this.registry.visible(session).map((v) => v.item));
  }

  /** The session's rules, plus the allowed-tools of the skills read in this turn. */
  rulesFor(session: Session, turnId: string): RuleSet {
    const base = session.ruleSet();
    const allows = (this.active.get(`${session.id}/${turnId}`) ?? []).flatMap((skill) => allowedToolRules(skill.allowedTools ?? []));
    if (allows.length === 0) return base;
    const key = allows.join("\n");
    const cached = this.ruleCache.get(base);
    if (cached?.key === key) return cached.rules;
    let rules: RuleSet;
    try {
      rules = new RuleSet({ ...base.rules, allow: [...base.rules.allow, ...allows] });
    } catch {
      // Too many rules together: the skill's allowances are dropped, which only means more asking.
      return base;
    }
    this.ruleCache.set(base, { key, rules });
    return rules;
  }
}
