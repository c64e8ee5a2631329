import type { DriverDeps } from "./driver-deps.js";
import { RunDriver } from "./run-driver.js";
import { isTerminal } from "./run-store.js";

/** The runs this controller drives: one driver per run, started on CreateRun and for unfinished runs at start. */
export class RunManager {
  private readonly drivers = new Map<string, { driver: RunDriver; done: Promise<void> }>();
  private closed = false;

  constructor(private readonly deps: DriverDeps) {}

  /** Starts driving `runId` unless it is already driven here (or the manager is closed). */
  drive(runId: string): void {
    if (this.closed || this.drivers.has(runId)) return;
    const driver = new RunDriver(runId, this.deps);
    const done = driver.run().finally(() => {
      if (this.drivers.get(runId)?.driver === driver) this.drivers.delete(runId);
    });
    this.drivers.set(runId, { driver, done });
  }

  /** Stops the local driver of `runId`, if any (e.g. after CancelRun). */
  stop(runId: string, reason: string): void {
    this.drivers.get(runId)?.driver.stop(reason);
  }

  /** True while `runId` is driven here. */
  isDriving(runId: string): boolean {
    return this.drivers.has(runId);
  }

  /** Resumes every unfinished run in the state store; returns how many. */
  async resumeAll(): Promise<number> {
    const runs = await this.deps.store.list();
    let n = 0;
    for (const run of runs) {
      if (isTerminal(run.state)) continue;
      this.drive(run.runId);
      n++;
    }
    return n;
  }

  /** Stops every driver and waits up to `timeoutMs` for them to finish their current write. */
  async close(timeoutMs = 10_000): Promise<void> {
    this.closed = true;
    const all = [...this.drivers.values()];
    for (const d of all) d.driver.stop("controller shutting down");
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.all(all.map((d) => d.done)),
      new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}
