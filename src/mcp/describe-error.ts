/** An error's message with its causes ("fetch failed: connect ECONNREFUSED ..."). */
export function describeError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    const message = withoutResponseBody(current instanceof Error ? current : new Error(String(current)));
    if (message && !parts.includes(message)) parts.push(message);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join(": ") || "unknown error";
}

/**
 * The SDK quotes an HTTP error response's body in its message. A URL a client named may be anything
 * the server can reach, so the body is left out of what statuses and logs say: the status code stays.
 */
function withoutResponseBody(error: Error): string {
  const code = (error as { code?: unknown }).code;
  const message = error.message.replace(
    /(Error POSTing to endpoint)(?: \(HTTP (\d+)\))?:[\s\S]*$/,
    (_, what: string, status: string | undefined) => `${what} (HTTP ${status ?? String(code)})`,
  );
  return message.length > 500 ? `${message.slice(0, 500)}…` : message;
}
