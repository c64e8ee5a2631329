import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { RevisionConflictError, type StateChange, type StateStore } from "@idpo/bus";
import { type Run, RunSchema, runStateEnded } from "@idpo/proto";
import { runKey } from "./run-plan.js";

/** A run as stored, with the KV revision it was read at. */
export interface StoredRun {
  run: Run;
  revision: number;
}

/** Whether two versions of a run are at the same state, stage and iteration (differ only in progress). */
function sameMilestone(a: Run, b: Run): boolean {
  return a.state === b.state && a.stage === b.stage && a.iteration === b.iteration;
}

/** Attempts of a read-modify-write before giving up: conflicts mean someone else is writing the same run. */
const MAX_CAS_ATTEMPTS = 50;

/**
 * Run state in the KV store (`runs.<run_id>` = Run binary). Every change is a compare-and-set on the
 * revision read, so two controllers writing one run serialise: the loser re-reads and re-applies its change
 * to the winner's state (or finds nothing left to do).
 */
export class RunStore {
  constructor(private readonly state: StateStore) {}

  private decode(key: string, value: Uint8Array): Run {
    try {
      return fromBinary(RunSchema, value);
    } catch (err) {
      throw new Error(`state key "${key}" does not hold a Run: ${(err as Error).message}`);
    }
  }

  /** The run and its revision, or undefined if there is none. */
  async get(runId: string): Promise<StoredRun | undefined> {
    const key = runKey(runId);
    const e = await this.state.get(key);
    return e ? { run: this.decode(key, e.value), revision: e.revision } : undefined;
  }

  /** Stores a new run; if one with the same id exists, returns it with `created: false` instead. */
  async create(run: Run): Promise<StoredRun & { created: boolean }> {
    const key = runKey(run.runId);
    try {
      const revision = await this.state.create(key, toBinary(RunSchema, run));
      return { run, revision, created: true };
    } catch (err) {
      if (!(err instanceof RevisionConflictError)) throw err;
      const existing = await this.get(run.runId);
      if (!existing) throw new Error(`run ${run.runId} existed and vanished while being created`);
      return { ...existing, created: false };
    }
  }

  /** Every stored run (unordered). */
  async list(): Promise<Run[]> {
    const keys = await this.state.keys("runs.");
    const out: Run[] = [];
    for (const key of keys) {
      if (key.indexOf(".", "runs.".length) !== -1) continue;
      const e = await this.state.get(key);
      if (e) out.push(this.decode(key, e.value));
    }
    return out;
  }

  /**
   * Read-modify-write of one run with compare-and-set. `change` gets the current run (a fresh copy on every
   * attempt) and edits it in place; returning false means "nothing to do" and writes nothing. A lost
   * compare-and-set re-reads and calls `change` again on the newer state.
   */
  async mutate(runId: string, change: (run: Run) => boolean): Promise<StoredRun & { changed: boolean }> {
    const key = runKey(runId);
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const cur = await this.get(runId);
      if (!cur) throw new Error(`run ${runId} is not stored`);
      if (!change(cur.run)) return { ...cur, changed: false };
      cur.run.updateTime = timestampNow();
      try {
        const revision = await this.state.update(key, toBinary(RunSchema, cur.run), cur.revision);
        return { run: cur.run, revision, changed: true };
      } catch (err) {
        if (!(err instanceof RevisionConflictError)) throw err;
      }
    }
    throw new Error(`run ${runId}: gave up after ${MAX_CAS_ATTEMPTS} conflicting concurrent writes`);
  }

  /**
   * Yields the run (with its revision) now and after every stored change, until `signal` aborts or the run
   * is terminal (the terminal state is yielded). Waits for the run to appear if it does not exist yet.
   * A consumer slower than the writers is not fed a backlog: of the changes that arrived while it was busy,
   * a run of progress-only updates (same state, stage and iteration) collapses to its latest, while every
   * change of state, stage or iteration is still yielded in order. (With training in the same process, a
   * training step can hold the event loop for seconds while several progress writes land.)
   */
  async *watch(runId: string, signal: AbortSignal): AsyncGenerator<StoredRun> {
    const key = runKey(runId);
    const w = await this.state.watch(key, { includeExisting: true });
    const pending: StateChange[] = [];
    let wake: (() => void) | undefined;
    let ended = false;
    let failure: unknown;
    const pump = (async () => {
      try {
        for await (const change of w) {
          if (change.key !== key) continue;
          pending.push(change);
          wake?.();
        }
      } catch (err) {
        failure = err;
      } finally {
        ended = true;
        wake?.();
      }
    })();
    const onAbort = () => w.stop();
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      if (signal.aborted) return;
      let lastRevision = 0;
      for (;;) {
        if (pending.length === 0) {
          if (ended) {
            if (failure !== undefined) throw failure;
            return;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
          continue;
        }
        const out: StoredRun[] = [];
        let deleted = false;
        for (const change of pending.splice(0)) {
          if (change.revision <= lastRevision) continue;
          lastRevision = change.revision;
          if (change.op === "delete") {
            deleted = true;
            break;
          }
          const next = { run: this.decode(key, change.value), revision: change.revision };
          const prev = out.at(-1);
          if (prev && sameMilestone(prev.run, next.run)) out[out.length - 1] = next;
          else out.push(next);
        }
        for (const item of out) {
          yield item;
          if (runStateEnded(item.run.state)) return;
        }
        if (deleted) return;
      }
    } finally {
      signal.removeEventListener("abort", onAbort);
      w.stop();
      await pump;
    }
  }
}
