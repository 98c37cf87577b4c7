/**
 * A database URL as it may be shown: without its password (or any secret query parameter), so
 * logs and error messages can name the database they mean.
 */
export function redactDatabaseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "(a database URL that does not parse)";
  }
  if (parsed.password !== "") parsed.password = "***";
  for (const key of [...parsed.searchParams.keys()]) {
    if (/pass|secret|key|token/i.test(key)) parsed.searchParams.set(key, "***");
  }
  return parsed.toString();
}

/** Throws a message a person can act on when `url` is not a PostgreSQL URL; never quotes the password. */
export function checkDatabaseUrl(url: string): void {
  if (url === "") throw new Error('the postgres store needs a database URL (--database-url, AGENTD_DATABASE_URL, or "database": {"url": ...} in the config file), e.g. postgres://user:password@host:5432/agentd');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("the database URL does not parse; expected postgres://user:password@host:5432/database");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new Error(`the database URL must start with postgres:// or postgresql://, not ${parsed.protocol}//`);
  }
}

/** Replaces every occurrence of the URL's password in `text` (driver errors may echo connection strings). */
export function withoutPassword(text: string, url: string): string {
  let raw = "";
  try {
    raw = new URL(url).password;
  } catch {
    return text;
  }
  if (raw === "") return text;
  let decoded = raw;
  try {
    decoded = decodeURIComponent(raw);
  } catch {
    // a malformed escape: the raw spelling is all there is
  }
  // Longest first, so that no spelling is left half replaced.
  const spellings = [...new Set([raw, decoded, encodeURIComponent(decoded)])].sort((a, b) => b.length - a.length);
  return spellings.reduce((result, spelling) => result.split(spelling).join("***"), text);
}
