/** A tool call waiting for a person. */
export interface PendingConfirmation {
  id: string;
  sessionId: string;
  turnId: string;
  callId: string;
  toolName: string;
  argumentsJson: string;
  /** The rule that asked; null when the default decision did. */
  rule: string | null;
  readOnly: boolean;
  createdAtMs: number;
  /** When the timeout action applies; 0 when it waits for ever. */
  deadlineMs: number;
}

export type ConfirmationOutcome = "approved" | "rejected" | "timed_out" | "cancelled";

export interface Resolution {
  outcome: ConfirmationOutcome;
  /** Whether the call runs: an approval, or a timeout whose action is to approve. */
  runs: boolean;
  /** "client:<owner>", "timeout" or "cancel". */
  resolvedBy: string;
  reason: string;
  /** The arguments the person approved instead, if they edited them. */
  editedArgumentsJson?: string;
  resolvedAtMs: number;
}

/** How many decided confirmations are remembered, to tell a late answer how it was decided. */
const DECIDED_KEPT = 256;

/**
 * A session's confirmations: the pending ones, each with the turn waiting on it, and the last
 * decided ones. resolve() is synchronous, so when two clients answer at once exactly one wins.
 */
export class ConfirmationBook {
  /** Each map is made on first use: most sessions never ask a person anything. */
  private pending: Map<string, { confirmation: PendingConfirmation; settle: (resolution: Resolution) => void }> | null = null;
  private decided: Map<string, Resolution> | null = null;
  /** Pending confirmations whose turn stopped for a shutdown: asked again after the restart. */
  private suspended: Set<string> | null = null;

  /** Registers a confirmation; the promise settles when it is resolved. */
  open(confirmation: PendingConfirmation): Promise<Resolution> {
    const pending = (this.pending ??= new Map());
    return new Promise((settle) => pending.set(confirmation.id, { confirmation, settle }));
  }

  get(id: string): PendingConfirmation | undefined {
    return this.pending?.get(id)?.confirmation;
  }

  /** How an id was decided, if it was recently. */
  decision(id: string): Resolution | undefined {
    return this.decided?.get(id);
  }

  list(): PendingConfirmation[] {
    return this.pending ? [...this.pending.values()].map((entry) => entry.confirmation) : [];
  }

  /** Marks a confirmation as kept for a restart: it stays listed, but cannot be answered until then. */
  suspend(id: string): void {
    if (this.pending?.has(id)) (this.suspended ??= new Set()).add(id);
  }

  isSuspended(id: string): boolean {
    return this.suspended?.has(id) ?? false;
  }

  /** Settles a pending confirmation; false when it is not pending (unknown, decided, or suspended). */
  resolve(id: string, resolution: Resolution): boolean {
    const entry = this.pending?.get(id);
    if (!entry || this.suspended?.has(id)) return false;
    this.pending!.delete(id);
    const decided = (this.decided ??= new Map());
    decided.set(id, resolution);
    if (decided.size > DECIDED_KEPT) decided.delete(decided.keys().next().value!);
    entry.settle(resolution);
    return true;
  }
}

/**
 * A session's confirmations read before it has any: every call goes to the session's own book, once
 * it has one (the first open makes it), so looking through a tree of sessions makes nothing that stays.
 */
export class DeferredConfirmationBook extends ConfirmationBook {
  constructor(
    /** The session's own book, made when `make` is true; null while it has none. */
    private readonly own: (make: boolean) => ConfirmationBook | null,
  ) {
    super();
  }

  override open(confirmation: PendingConfirmation): Promise<Resolution> {
    return this.own(true)!.open(confirmation);
  }

  override get(id: string): PendingConfirmation | undefined {
    return this.own(false)?.get(id);
  }

  override decision(id: string): Resolution | undefined {
    return this.own(false)?.decision(id);
  }

  override list(): PendingConfirmation[] {
    return this.own(false)?.list() ?? [];
  }

  override suspend(id: string): void {
    this.own(false)?.suspend(id);
  }

  override isSuspended(id: string): boolean {
    return this.own(false)?.isSuspended(id) ?? false;
  }

  override resolve(id: string, resolution: Resolution): boolean {
    return this.own(false)?.resolve(id, resolution) ?? false;
  }
}
