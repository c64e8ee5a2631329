import type { CurvePanel } from "@idpo/charts";
import { type Job, JobKind } from "@idpo/proto";

export type { CurvePanel } from "@idpo/charts";

/** The charts a preference job (DPO, SPIN) shows, by metric name. */
const PREFERENCE_PANELS: { title: string; metrics: string[] }[] = [
  { title: "loss", metrics: ["loss"] },
  { title: "implicit accuracy", metrics: ["implicit_acc"] },
  { title: "model vs reference loss", metrics: ["raw_model_loss", "ref_loss"] },
];

/** The charts of other jobs (pretraining, improver, SFT). */
const PLAIN_PANELS: { title: string; metrics: string[] }[] = [{ title: "loss", metrics: ["loss"] }];

/** Whether a job trains the policy on preferences (DPO or SPIN). */
export function isPreferenceJob(job: Job): boolean {
  const kind = job.spec?.kind;
  return kind === JobKind.DPO || kind === JobKind.SPIN;
}

/**
 * A job's training curve (Job.history) as chart panels: for preference jobs `loss`, `implicit_acc` and
 * `raw_model_loss` against `ref_loss`; for others `loss`. A panel none of whose metrics was recorded is left
 * out.
 */
export function jobCurves(job: Job): CurvePanel[] {
  const steps = job.history.map((p) => p.step);
  const panels = isPreferenceJob(job) ? PREFERENCE_PANELS : PLAIN_PANELS;
  const out: CurvePanel[] = [];
  for (const p of panels) {
    const series = p.metrics
      .map((name) => ({ name, values: job.history.map((h) => (name in h.metrics ? h.metrics[name] : null)) }))
      .filter((s) => s.values.some((v) => v !== null));
    if (series.length > 0) out.push({ title: p.title, steps, series });
  }
  return out;
}
