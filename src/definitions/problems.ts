/** Why one skill or subagent definition file was not loaded, and where. */
export interface DefinitionProblem {
  file: string;
  /** 1-based line in the file; the `---` that opens the front matter is line 1. */
  line: number;
  message: string;
}

/** A problem as editors and compilers print one: "<file>:<line>: <message>". */
export function describeProblem(problem: DefinitionProblem): string {
  return `${problem.file}:${problem.line}: ${problem.message}`;
}
