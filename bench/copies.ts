import type { BackendResult } from "./measure.js";
import type { Measurement } from "./timing.js";

const METRIC_KEYS = ["forward", "sampling", "improver", "training", "epsTraining"] as const;

/**
 * The figures of identical processes that ran at the same time as one column: units/s and GFLOP/s
 * add up; time and CPU-time per call are the processes' mean (so work per CPU-second stays a
 * per-process figure); loads are the highest seen.
 */
export function summedCopies(runs: readonly BackendResult[]): BackendResult {
  const [first] = runs;
  if (first == null) throw new Error("summedCopies: no runs");
  const out: BackendResult = { ...first, profile: undefined };
  const n = runs.length;
  for (const key of METRIC_KEYS) {
    const ms = runs.map((r) => r[key]).filter((m): m is Measurement => m != null);
    if (ms.length === 0) continue;
    if (ms.length !== n) throw new Error(`summedCopies: ${key} was measured by ${ms.length} of ${n} copies`);
    const mean = (f: (m: Measurement) => number) => ms.reduce((a, m) => a + f(m), 0) / n;
    out[key] = {
      perSecond: ms.reduce((a, m) => a + m.perSecond, 0),
      gflops: ms.reduce((a, m) => a + m.gflops, 0),
      secondsPerCall: mean((m) => m.secondsPerCall),
      cpuSecondsPerCall: mean((m) => m.cpuSecondsPerCall),
      calls: ms.reduce((a, m) => a + m.calls, 0),
      unitsPerCall: ms[0].unitsPerCall,
    };
  }
  out.loadBefore = first.loadBefore.map((_, i) => Math.max(...runs.map((r) => r.loadBefore[i])));
  out.loadAfter = first.loadAfter.map((_, i) => Math.max(...runs.map((r) => r.loadAfter[i])));
  return out;
}
