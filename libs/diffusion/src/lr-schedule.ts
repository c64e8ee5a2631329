/** Learning-rate schedule: linear warmup, then constant, cosine or linear decay. */
export interface LrScheduleConfig {
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warmup (step k < warmup uses lr·(k + 1)/warmup). Default 0. */
  warmupSteps?: number;
  /** After warmup: "constant" (default), or "cosine" or "linear" decay down to minLr at totalSteps. */
  kind?: LrScheduleKind;
  /** Total steps (required for the decaying schedules). */
  totalSteps?: number;
  /** Final learning rate of a decaying schedule. Default 0. */
  minLr?: number;
}

/** The shape of the schedule after warmup. */
export type LrScheduleKind = "constant" | "cosine" | "linear";

/**
 * Learning rate for 0-based step `step`. The whole config is checked at every call, whatever the step, so
 * that a caller checking step 0 (as the Trainer does when built) learns of a schedule that cannot run.
 */
export function learningRateAt(cfg: LrScheduleConfig, step: number): number {
  const warm = cfg.warmupSteps ?? 0;
  if (!(cfg.lr >= 0)) throw new Error(`lr must be ≥ 0, got ${cfg.lr}`);
  if (!Number.isInteger(warm) || warm < 0)
    throw new Error(`warmupSteps must be a non-negative integer, got ${warm}`);
  const kind = cfg.kind ?? "constant";
  if (kind !== "constant" && kind !== "cosine" && kind !== "linear")
    throw new Error(`unknown LR schedule ${JSON.stringify(kind)} (known: constant, cosine, linear)`);
  const total = cfg.totalSteps;
  if (kind !== "constant" && (total === undefined || !Number.isInteger(total) || total <= warm)) {
    throw new Error(`${kind} schedule needs totalSteps > warmupSteps, got ${total}`);
  }
  if (step < warm) return (cfg.lr * (step + 1)) / warm;
  if (kind === "constant") return cfg.lr;
  const minLr = cfg.minLr ?? 0;
  const progress = Math.min(1, (step - warm) / (total! - warm));
  const fraction = kind === "cosine" ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return minLr + (cfg.lr - minLr) * fraction;
}
