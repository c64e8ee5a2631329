import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { loadavg } from "node:os";
import { dirname } from "node:path";

/** A finished stage as the state file keeps it. */
export interface StageRecord {
  /** The stage's result (JSON: checkpoint ids, artifact names, scores, metrics). */
  result: unknown;
  /** When the stage started (ISO time of its last, successful, attempt). */
  startedAt: string;
  /** When it finished. */
  finishedAt: string;
  /** Wall seconds of that attempt (a resumed stage counts only its last attempt). */
  seconds: number;
  /** 1-minute load average of the machine when the stage finished (it is shared: wall times scale with it). */
  load?: number;
}

/** The state file of one benchmark run (one config and seed). */
export interface BenchState {
  /** Format version. */
  version: 1;
  /** Configuration name. */
  config: string;
  /** Fingerprint of the configuration (resuming with another config is refused). */
  configHash: string;
  /** Master seed. */
  seed: number;
  /** Finished stages by name. */
  stages: Record<string, StageRecord>;
}

/** What the runner reports (progress goes to stderr in the CLI). */
export type StageLog = (msg: string) => void;

/**
 * Runs named stages once: a stage's result is written to the state file (atomically) as soon as it
 * finishes, and a later run with the same file returns the stored result instead of running it again,
 * so an interrupted benchmark resumes at its first unfinished stage.
 */
export class StageRunner {
  private constructor(
    readonly file: string,
    private readonly state: BenchState,
    private readonly log: StageLog,
    private readonly now: () => Date,
  ) {}

  /**
   * Opens (or creates) the state file for `config`/`configHash`/`seed`. A file written for another
   * configuration or seed is an error naming both, never silently reused or overwritten.
   */
  static async open(
    file: string,
    id: { config: string; configHash: string; seed: number },
    log: StageLog = () => {},
    now: () => Date = () => new Date(),
  ): Promise<StageRunner> {
    let state: BenchState;
    let text: string | undefined;
    try {
      text = await readFile(file, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (text === undefined) {
      state = { version: 1, config: id.config, configHash: id.configHash, seed: id.seed, stages: {} };
    } else {
      state = parseState(text, file);
      if (state.configHash !== id.configHash || state.config !== id.config || state.seed !== id.seed) {
        throw new Error(
          `${file} belongs to config "${state.config}" (${state.configHash}) seed ${state.seed}, not "${id.config}" ` +
            `(${id.configHash}) seed ${id.seed}: the configuration changed since it was written; ` +
            "use another --data-dir, or delete that state directory to start over",
        );
      }
    }
    const runner = new StageRunner(file, state, log, now);
    await runner.save();
    return runner;
  }

  /** Whether a stage has finished. */
  done(name: string): boolean {
    return Object.hasOwn(this.state.stages, name);
  }

  /** The stored result of a finished stage (undefined when it has not finished). */
  result<T>(name: string): T | undefined {
    return this.done(name) ? (this.state.stages[name].result as T) : undefined;
  }

  /** The stored record of a finished stage. */
  record(name: string): StageRecord | undefined {
    return this.done(name) ? this.state.stages[name] : undefined;
  }

  /** Names of the finished stages, in the order they finished. */
  finished(): string[] {
    return Object.entries(this.state.stages)
      .sort((a, b) => a[1].finishedAt.localeCompare(b[1].finishedAt))
      .map(([k]) => k);
  }

  /** The first of `names` that has not finished (undefined when all have). */
  firstUnfinished(names: readonly string[]): string | undefined {
    return names.find((n) => !this.done(n));
  }

  /** A copy of the whole state. */
  snapshot(): BenchState {
    return structuredClone(this.state);
  }

  /**
   * Runs `fn` unless stage `name` has finished, in which case its stored result is returned. The result
   * must survive a JSON round trip (it is what a resumed run gets back).
   */
  async run<T>(name: string, fn: () => Promise<T>): Promise<T> {
    if (!/^[a-z0-9][a-z0-9._:/-]*$/.test(name))
      throw new Error(`stage name ${JSON.stringify(name)} is not [a-z0-9._:/-]+`);
    if (this.done(name)) {
      this.log(`stage ${name}: done earlier, reusing its result`);
      return this.state.stages[name].result as T;
    }
    const started = this.now();
    this.log(`stage ${name}: started`);
    const result = await fn();
    const finished = this.now();
    const stored = JSON.parse(JSON.stringify(result ?? null)) as unknown;
    const seconds = (finished.getTime() - started.getTime()) / 1000;
    this.state.stages[name] = {
      result: stored,
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      seconds,
      load: loadavg()[0],
    };
    await this.save();
    this.log(`stage ${name}: finished in ${formatDuration(seconds)}`);
    return stored as T;
  }

  /** Forgets a finished stage (so that the next run repeats it). */
  async forget(name: string): Promise<void> {
    if (!this.done(name)) return;
    delete this.state.stages[name];
    await this.save();
  }

  private async save(): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, `${JSON.stringify(this.state, null, 2)}\n`);
    await rename(tmp, this.file);
  }
}

/** Parses and checks a state file's text; errors name the file and the problem. */
export function parseState(text: string, file: string): BenchState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`${file}: not JSON (${(err as Error).message}); delete it to start over`);
  }
  const s = raw as Partial<BenchState>;
  if (s === null || typeof s !== "object" || s.version !== 1)
    throw new Error(`${file}: not a version-1 benchmark state`);
  if (typeof s.config !== "string" || typeof s.configHash !== "string" || typeof s.seed !== "number") {
    throw new Error(`${file}: missing config, configHash or seed`);
  }
  if (s.stages === null || typeof s.stages !== "object") throw new Error(`${file}: missing stages`);
  for (const [name, rec] of Object.entries(s.stages)) {
    if (
      rec === null ||
      typeof rec !== "object" ||
      typeof rec.finishedAt !== "string" ||
      typeof rec.seconds !== "number"
    ) {
      throw new Error(`${file}: stage ${name} is malformed`);
    }
  }
  return s as BenchState;
}

/** "1h 02m 03s" / "2m 03s" / "4.2s". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const mm = String(m).padStart(2, "0");
  const rr = String(r).padStart(2, "0");
  return h > 0 ? `${h}h ${mm}m ${rr}s` : `${m}m ${rr}s`;
}
