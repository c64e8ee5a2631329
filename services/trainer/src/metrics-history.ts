import { create } from "@bufbuild/protobuf";
import { type MetricsPoint, MetricsPointSchema } from "@idpo/proto";

/** Most points a job's training curve keeps (Job.history); past it every other point is dropped. */
export const HISTORY_MAX_POINTS = 512;

/**
 * Appends the metrics of `step` to a job's training curve. A point at or after `step` (left by steps run
 * again after a resume from an earlier checkpoint) is replaced. When the curve exceeds `max` points every
 * other point is dropped (the newest is always kept), so the curve keeps spanning the whole job at half the
 * density: its size stays bounded for jobs of any length.
 */
export function appendHistory(
  history: readonly MetricsPoint[],
  step: number,
  metrics: Record<string, number>,
  max = HISTORY_MAX_POINTS,
): MetricsPoint[] {
  const out = history.filter((p) => p.step < step);
  out.push(create(MetricsPointSchema, { step, metrics: { ...metrics } }));
  if (out.length <= max) return out;
  const last = out.length - 1;
  return out.filter((_, i) => (last - i) % 2 === 0);
}
