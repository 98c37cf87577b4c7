/**
 * Splits a one-line list such as `Read, Grep bash(git diff:*)` into its entries: separated by commas
 * or spaces, except inside parentheses, so `Bash(git status:*)` stays whole. Returns why when the
 * parentheses do not pair up.
 */
export function splitList(text: string): { entries: string[] } | { error: string } {
  const entries: string[] = [];
  let current = "";
  let depth = 0;
  for (const char of text) {
    if (char === "(") depth++;
    if (char === ")" && --depth < 0) return { error: 'has a ")" without a "(" before it' };
    if (depth === 0 && (char === "," || /\s/.test(char))) {
      if (current !== "") entries.push(current);
      current = "";
      continue;
    }
    current += char;
  }
  if (depth > 0) return { error: 'has a "(" that is never closed' };
  if (current !== "") entries.push(current);
  return { entries };
}
