import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { runStateEnded } from "@idpo/proto";
import { sleep } from "@idpo/runtime";
import type { DriverDeps } from "./driver-deps.js";
import { RunDriver } from "./run-driver.js";
import { errorMessage } from "./run-errors.js";
import { RunLease } from "./run-lease.js";

/** One run this manager holds or waits for: its driver while it holds the run's lease. */
interface HeldRun {
  readonly abort: AbortController;
  driver?: RunDriver;
  done: Promise<void>;
}

/** A name for this controller that no other controller, nor a later run of this one, uses. */
function newHolderId(): string {
  return `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`;
}

/**
 * The runs this controller drives. A run is driven only under its lease (RunLease, TTL
 * `options.leaseMs`): of several controllers told about one run (CreateRun on each, resumption at start),
 * one drives it and the others wait, taking it over when the holder's lease expires (a dead controller)
 * or is given up (a controller shutting down).
 */
export class RunManager {
  private readonly runs = new Map<string, HeldRun>();
  private closed = false;

  constructor(
    private readonly deps: DriverDeps,
    /** This controller's name in the leases it holds. */
    readonly holder: string = newHolderId(),
  ) {}

  /** Renewal (and contention) interval: a third of the TTL, so that two renewals may fail before expiry. */
  private get renewMs(): number {
    return Math.max(1, Math.floor(this.deps.options.leaseMs / 3));
  }

  /** Starts driving `runId`, or waiting for its lease, unless already doing so here (or closed). */
  drive(runId: string): void {
    if (this.closed || this.runs.has(runId)) return;
    const entry: HeldRun = { abort: new AbortController(), done: Promise.resolve() };
    entry.done = this.hold(runId, entry)
      .catch((err) => this.deps.logger.error("run lease holder stopped", { runId, error: errorMessage(err) }))
      .finally(() => {
        if (this.runs.get(runId) === entry) this.runs.delete(runId);
      });
    this.runs.set(runId, entry);
  }

  /** Stops the local driver of `runId`, if any (e.g. after CancelRun). */
  stop(runId: string, reason: string): void {
    this.runs.get(runId)?.driver?.stop(reason);
  }

  /** True while `runId` is driven here (this controller holds its lease). */
  isDriving(runId: string): boolean {
    return this.runs.get(runId)?.driver !== undefined;
  }

  /** Resumes (or waits for the lease of) every unfinished run in the state store; returns how many. */
  async resumeAll(): Promise<number> {
    const runs = await this.deps.store.list();
    let n = 0;
    for (const run of runs) {
      if (runStateEnded(run.state)) continue;
      this.drive(run.runId);
      n++;
    }
    return n;
  }

  /** Stops every driver, gives their leases up and waits up to `timeoutMs` for them to finish. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    const all = [...this.runs.values()];
    for (const r of all) r.abort.abort();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(all.map((r) => r.done)),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  /** Waits for the run's lease, drives the run while holding it, and waits again if it is lost. */
  private async hold(runId: string, entry: HeldRun): Promise<void> {
    const lease = new RunLease(this.deps.bus.state, runId, this.holder, this.deps.options.leaseMs);
    const signal = entry.abort.signal;
    while (await this.acquire(lease, signal)) {
      const driver = new RunDriver(runId, this.deps);
      entry.driver = driver;
      const lost = await this.driveWhileHeld(lease, driver, signal);
      entry.driver = undefined;
      if (!lost) {
        await lease.release();
        return;
      }
    }
  }

  /** Tries for the lease every renewal interval; false once the run has ended (or vanished) or on close. */
  private async acquire(lease: RunLease, signal: AbortSignal): Promise<boolean> {
    const { store, logger } = this.deps;
    let told = false;
    while (!signal.aborted) {
      try {
        const cur = await store.get(lease.runId);
        if (!cur || runStateEnded(cur.run.state)) return false;
        if (await lease.tryAcquire()) {
          if (told) logger.info("took over the run's lease", { runId: lease.runId, holder: this.holder });
          return true;
        }
        if (!told)
          logger.info("another controller drives the run; waiting for its lease", { runId: lease.runId });
        told = true;
      } catch (err) {
        logger.warn("could not read the run's lease", { runId: lease.runId, error: errorMessage(err) });
      }
      await sleep(this.renewMs, signal).catch(() => {});
    }
    return false;
  }

  /**
   * Runs `driver` and renews the lease until the driver ends (false) or the lease is lost (true: the driver
   * is stopped first). A renewal that fails for want of the bus is retried at the next interval: the
   * driver, which cannot write either, goes on.
   */
  private async driveWhileHeld(lease: RunLease, driver: RunDriver, signal: AbortSignal): Promise<boolean> {
    const { logger } = this.deps;
    const onAbort = () => driver.stop("controller shutting down");
    signal.addEventListener("abort", onAbort, { once: true });
    if (signal.aborted) onAbort();
    let ended = false;
    const done = driver.run().finally(() => {
      ended = true;
    });
    try {
      for (;;) {
        const tick = new AbortController();
        await Promise.race([done, sleep(this.renewMs, tick.signal).catch(() => {})]);
        tick.abort();
        if (ended) return false;
        let kept = true;
        try {
          kept = await lease.renew();
        } catch (err) {
          logger.warn("could not renew the run's lease", { runId: lease.runId, error: errorMessage(err) });
        }
        if (!kept) {
          logger.warn("lost the run's lease to another controller; stopping its driver", {
            runId: lease.runId,
          });
          driver.stop("another controller holds the run's lease");
          await done;
          return true;
        }
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
    }
  }
}
