import { createHash } from "node:crypto";
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
  /** Fingerprint of the stage's inputs (see {@link inputsHash}); a stage whose inputs changed runs again. */
  inputsHash: string;
  /** The engines that ran it (StageRunner.engines then; absent in states written before they were kept). */
  engines?: string;
}

/** The state file of one benchmark run (one config and seed). */
export interface BenchState {
  /** Format version. */
  version: 1;
  /** Configuration name. */
  config: string;
  /**
   * Fingerprint of the whole configuration the state was last opened with (informational: which stages
   * are reused is decided per stage, by its own inputs).
   */
  configHash: string;
  /** Master seed. */
  seed: number;
  /** Finished stages by name. */
  stages: Record<string, StageRecord>;
}

/** What the runner reports (progress goes to stderr in the CLI). */
export type StageLog = (msg: string) => void;

/** Stable JSON (sorted keys; bigints as decimal strings) of a value, so equal inputs hash equally. */
export function stableJson(v: unknown): string {
  if (typeof v === "bigint") return JSON.stringify(v.toString());
  if (Array.isArray(v)) return `[${v.map(stableJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const keys = Object.keys(v as Record<string, unknown>)
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`).join(",")}}`;
  }
  return JSON.stringify(v) ?? "null";
}

/** A stage's dependency fingerprint: 16 hex digits of the SHA-256 of its inputs' stable JSON. */
export function inputsHash(inputs: unknown): string {
  return createHash("sha256").update(stableJson(inputs)).digest("hex").slice(0, 16);
}

/**
 * Runs named stages once: a stage's result is written to the state file (atomically) as soon as it
 * finishes, and a later run with the same file returns the stored result instead of running it again,
 * so an interrupted benchmark resumes at its first unfinished stage. Each stage is keyed by its own
 * inputs (the settings it uses and the content hashes of the checkpoints it reads): a change to the
 * configuration reruns exactly the stages whose inputs it changes, and adding a stage invalidates none.
 */
export class StageRunner {
  /** Which engines run the stages from now on: recorded with each stage that finishes (see StageRecord). */
  engines: string | undefined;

  private constructor(
    readonly file: string,
    private readonly state: BenchState,
    private readonly log: StageLog,
    private readonly now: () => Date,
  ) {}

  /**
   * Opens (or creates) the state file for `config`/`seed` (recording `configHash`). A file written for
   * another configuration name or seed is an error naming both, never silently reused or overwritten.
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
      if (state.config !== id.config || state.seed !== id.seed) {
        throw new Error(
          `${file} belongs to config "${state.config}" seed ${state.seed}, not "${id.config}" seed ${id.seed}; ` +
            "use another --data-dir, or delete that state directory to start over",
        );
      }
      state.configHash = id.configHash;
    }
    const runner = new StageRunner(file, state, log, now);
    await runner.save();
    return runner;
  }

  /** Whether a stage has finished (with whatever inputs it had then). */
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
   * Runs `fn` unless stage `name` has finished with the same `inputs`, in which case its stored result is
   * returned. `inputs` is everything the stage's result depends on (JSON-able; bigints allowed). The result
   * must survive a JSON round trip (it is what a resumed run gets back).
   */
  async run<T>(name: string, inputs: unknown, fn: () => Promise<T>): Promise<T> {
    if (!/^[a-z0-9][a-z0-9._:/-]*$/.test(name))
      throw new Error(`stage name ${JSON.stringify(name)} is not [a-z0-9._:/-]+`);
    const hash = inputsHash(inputs);
    const earlier = this.state.stages[name];
    if (earlier && earlier.inputsHash === hash) {
      this.log(`stage ${name}: done earlier, reusing its result`);
      return earlier.result as T;
    }
    if (earlier)
      this.log(
        `stage ${name}: its inputs changed since it ran (${earlier.inputsHash} → ${hash}), running it again`,
      );
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
      inputsHash: hash,
      ...(this.engines !== undefined ? { engines: this.engines } : {}),
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
      typeof rec.seconds !== "number" ||
      typeof rec.inputsHash !== "string" ||
      (rec.engines !== undefined && typeof rec.engines !== "string")
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
