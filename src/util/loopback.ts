import { isIP } from "node:net";

/** Whether a host name or address only accepts connections from this machine. */
export function isLoopbackHost(host: string): boolean {
  let h = host.trim().toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h === "localhost" || h === "localhost.") return true;
  if (h.startsWith("::ffff:") && isIP(h.slice(7)) === 4) h = h.slice(7);
  if (isIP(h) === 4) return h.split(".")[0] === "127";
  // The URL parser writes an IPv6 address in its shortest form, so "0:0:0:0:0:0:0:1" becomes "[::1]".
  if (isIP(h) === 6) return new URL(`http://[${h}]/`).hostname === "[::1]";
  return false;
}
