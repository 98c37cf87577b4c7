import type { Tool } from "../types.js";
import { createBashTool, type BashToolLimits } from "./bash.js";
import { createEditTool, type EditToolLimits } from "./edit.js";
import { createGlobTool, type GlobToolLimits } from "./glob.js";
import { createGrepTool, type GrepToolLimits } from "./grep.js";

export { createBashTool, commandEnv, DEFAULT_BASH_TOOL_LIMITS, type BashToolLimits } from "./bash.js";
export { createEditTool, DEFAULT_EDIT_TOOL_LIMITS, type EditToolLimits } from "./edit.js";
export { createGlobTool, DEFAULT_GLOB_TOOL_LIMITS, type GlobToolLimits } from "./glob.js";
export { createGrepTool, DEFAULT_GREP_TOOL_LIMITS, type GrepToolLimits } from "./grep.js";
export { builtinFileTools, createFileTools, DEFAULT_FILE_TOOL_LIMITS, type FileToolLimits } from "./files.js";

/** Limits of the coding tools, per tool; anything left out keeps its default. */
export interface CodingToolOverrides {
  edit?: Partial<EditToolLimits>;
  glob?: Partial<GlobToolLimits>;
  grep?: Partial<GrepToolLimits>;
  bash?: Partial<BashToolLimits>;
}

/**
 * The coding tools, in addition to the file tools: edit_file, glob, grep (read-only) and bash.
 * edit_file and bash change things (readOnly false): register them behind a permission gate.
 */
export function codingTools(overrides: CodingToolOverrides = {}): Tool[] {
  return [
    createEditTool(overrides.edit),
    createGlobTool(overrides.glob),
    createGrepTool(overrides.grep),
    createBashTool(overrides.bash),
  ];
}
