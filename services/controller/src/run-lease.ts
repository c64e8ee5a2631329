import { RevisionConflictError, type StateStore } from "@idpo/bus";

/** The state key of the lease on driving `runId`. */
export function leaseKey(runId: string): string {
  return `leases.controller.${runId}`;
}

/** What a lease key holds: who holds it and how long it lasts without a renewal. */
export interface LeaseValue {
  holder: string;
  ttlMs: number;
}

function encode(v: LeaseValue): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}

/** The stored lease, or undefined when the value is not one (then it expires after the reader's own TTL). */
export function decodeLease(value: Uint8Array): LeaseValue | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(value)) as Partial<LeaseValue>;
    if (typeof v.holder === "string" && typeof v.ttlMs === "number" && v.ttlMs > 0) {
      return { holder: v.holder, ttlMs: v.ttlMs };
    }
  } catch {
    // Not JSON: handled as a lease of unknown holder.
  }
  return undefined;
}

/**
 * One controller's lease on driving one run, kept in the state store with compare-and-set. The holder renews
 * it (a new revision) every third of its TTL. Expiry needs no shared clock: a contender takes the lease over
 * only after it has seen the same revision, unrenewed, for the lease's whole TTL by its own clock. A failed
 * read restarts that wait, so a bus outage (which stops the holder's renewals too) does not hand a live
 * holder's runs over.
 */
export class RunLease {
  private revision = 0;
  private seen?: { revision: number; since: number };

  constructor(
    private readonly state: StateStore,
    readonly runId: string,
    private readonly holder: string,
    private readonly ttlMs: number,
    private readonly now: () => number = Date.now,
  ) {
    if (!(ttlMs > 0)) throw new Error(`RunLease: TTL must be positive, got ${ttlMs}`);
  }

  private get key(): string {
    return leaseKey(this.runId);
  }

  private get value(): Uint8Array {
    return encode({ holder: this.holder, ttlMs: this.ttlMs });
  }

  /** True while this lease is believed held (after a successful acquire or renew). */
  get held(): boolean {
    return this.revision > 0;
  }

  /**
   * One attempt to take the lease: it is free, already ours, or expired. Returns whether it is held now.
   * Throws what the store throws (a bus outage), after restarting the expiry wait.
   */
  async tryAcquire(): Promise<boolean> {
    let entry: Awaited<ReturnType<StateStore["get"]>>;
    try {
      entry = await this.state.get(this.key);
    } catch (err) {
      this.seen = undefined;
      throw err;
    }
    try {
      if (!entry) {
        this.revision = await this.state.create(this.key, this.value);
        return true;
      }
      const current = decodeLease(entry.value);
      const expired = () => {
        const seen = this.seen;
        return seen?.revision === entry.revision && this.now() - seen.since >= (current?.ttlMs ?? this.ttlMs);
      };
      if (current?.holder === this.holder || expired()) {
        this.revision = await this.state.update(this.key, this.value, entry.revision);
        return true;
      }
      if (this.seen?.revision !== entry.revision) this.seen = { revision: entry.revision, since: this.now() };
      return false;
    } catch (err) {
      if (err instanceof RevisionConflictError) return false;
      this.seen = undefined;
      throw err;
    }
  }

  /**
   * Renews a held lease. Returns false when it was lost (another controller took it over, or it was
   * deleted); throws what the store throws (a bus outage: the caller retries at its next renewal).
   */
  async renew(): Promise<boolean> {
    if (!this.held) return false;
    try {
      this.revision = await this.state.update(this.key, this.value, this.revision);
      return true;
    } catch (err) {
      if (!(err instanceof RevisionConflictError)) throw err;
    }
    // A renewal stored just before its reply was lost leaves our own value at a revision we did not see.
    const entry = await this.state.get(this.key);
    if (entry && decodeLease(entry.value)?.holder === this.holder) {
      this.revision = entry.revision;
      return true;
    }
    this.revision = 0;
    this.seen = undefined;
    return false;
  }

  /** Gives a held lease up, so that another controller can take the run at once. Never throws. */
  async release(): Promise<void> {
    if (!this.held) return;
    const revision = this.revision;
    this.revision = 0;
    try {
      await this.state.delete(this.key, revision);
    } catch {
      // Lost or unreachable: the lease then expires after its TTL.
    }
  }
}
