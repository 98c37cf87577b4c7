/**
 * Who is making a request, as the edge authenticated it. Users see and act on their own sessions
 * only; admins on every session, and may name an owner. With no authentication configured (the
 * loopback default) every caller is the anonymous admin.
 */
export interface Caller {
  /** The owner id sessions are created under and checked against; "" for the anonymous admin. */
  owner: string;
  role: "user" | "admin";
  /** How the caller proved who it is, for the audit log. */
  via: "none" | "token" | "jwt" | "mtls";
}

export const ANONYMOUS_ADMIN: Caller = Object.freeze({ owner: "", role: "admin", via: "none" });

export function isAdmin(caller: Caller): boolean {
  return caller.role === "admin";
}
