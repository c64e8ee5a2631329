/** Timing of benchmark workloads, shared by the tfjs and onnxruntime measurements. */

/** One timed workload. */
export interface Measurement {
  /** Units (images or pairs) per second. */
  perSecond: number;
  /** Achieved GFLOP/s (analytic FLOPs / wall time). */
  gflops: number;
  /** Wall seconds per call. */
  secondsPerCall: number;
  /** Process CPU seconds per call (all threads; on a busy machine the better estimate of idle speed). */
  cpuSecondsPerCall: number;
  /** Calls timed. */
  calls: number;
  /** Units per call. */
  unitsPerCall: number;
}

/** Wall and CPU time per call of a timed workload. */
export interface Timing {
  seconds: number;
  cpuSeconds: number;
  calls: number;
}

/**
 * Calls `warmup` (default `fn`) once, then `fn` repeatedly until `minSeconds` have passed (at least
 * once). A shorter warm-up with the same shapes (e.g. 2 sampling steps) primes the kernels' caches.
 */
export async function timeIt(
  fn: () => Promise<void> | void,
  minSeconds: number,
  warmup: () => Promise<void> | void = fn,
): Promise<Timing> {
  await warmup();
  let calls = 0;
  const start = performance.now();
  const cpu = process.cpuUsage();
  let elapsed = 0;
  while (calls < 1 || elapsed < minSeconds) {
    await fn();
    calls++;
    elapsed = (performance.now() - start) / 1000;
  }
  const used = process.cpuUsage(cpu);
  return { seconds: elapsed / calls, cpuSeconds: (used.user + used.system) / 1e6 / calls, calls };
}

/** A Timing as throughput: `units` per call, `flopsPerCall` analytic FLOPs per call. */
export function measurement(t: Timing, units: number, flopsPerCall: number): Measurement {
  return {
    perSecond: units / t.seconds,
    gflops: flopsPerCall / t.seconds / 1e9,
    secondsPerCall: t.seconds,
    cpuSecondsPerCall: t.cpuSeconds,
    calls: t.calls,
    unitsPerCall: units,
  };
}
