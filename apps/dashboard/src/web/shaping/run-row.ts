import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { type Run, RunStage, RunState, runStateEnded } from "@idpo/proto";

/** One line of the run list. */
export interface RunRow {
  runId: string;
  /** The config's name, or "". */
  name: string;
  /** Lower-case state: pending, running, succeeded, failed, cancelled. */
  state: string;
  /** Lower-case stage while running (base, improver, generate, train, evaluate, done), else "". */
  stage: string;
  /** "current/total" iterations. */
  iteration: string;
  /** Fraction of the current stage done, in [0, 1]; undefined when the stage reports no total. */
  progress: number | undefined;
  /** Creation time, ms since the epoch; 0 when unknown. */
  startedMs: number;
  /** Seconds from creation to the last change (ended runs) or to `nowMs` (others). */
  durationSeconds: number;
}

/** A state filter of the run list: a lower-case state name, or "all". */
export type StateFilter = "all" | "pending" | "running" | "succeeded" | "failed" | "cancelled";

/** Milliseconds since the epoch of a protobuf timestamp (0 when unset). */
export function timestampMs(t: Timestamp | undefined): number {
  return t ? Number(t.seconds) * 1000 + Math.floor(t.nanos / 1e6) : 0;
}

/** Lower-case name of an enum value without its prefix: RunState.RUNNING → "running". */
export function enumName(names: Record<number, string>, value: number): string {
  return (names[value] ?? String(value)).toLowerCase();
}

/** The run list's view of a run. */
export function runRow(run: Run, nowMs: number): RunRow {
  const started = timestampMs(run.createTime);
  const end = runStateEnded(run.state) ? timestampMs(run.updateTime) : nowMs;
  const total = Number(run.progress?.total ?? 0n);
  const done = Number(run.progress?.done ?? 0n);
  return {
    runId: run.runId,
    name: run.config?.name ?? "",
    state: enumName(RunState, run.state),
    stage: run.state === RunState.RUNNING ? enumName(RunStage, run.stage) : "",
    iteration: `${run.iteration}/${run.config?.iterations ?? 0}`,
    progress: total > 0 ? Math.min(1, done / total) : undefined,
    startedMs: started,
    durationSeconds: started > 0 ? Math.max(0, (end - started) / 1000) : 0,
  };
}

/** The runs whose state passes the filter, in the given order. */
export function filterRuns(runs: readonly Run[], filter: StateFilter): Run[] {
  if (filter === "all") return [...runs];
  return runs.filter((r) => enumName(RunState, r.state) === filter);
}

/** A duration as "45 s", "12 min 5 s" or "3 h 20 min". */
export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}
