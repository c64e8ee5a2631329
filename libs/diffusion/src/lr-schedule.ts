/** Learning-rate schedule: linear warmup, then constant or cosine decay. */
export interface LrScheduleConfig {
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warmup (step k < warmup uses lr·(k + 1)/warmup). Default 0. */
  warmupSteps?: number;
  /** After warmup: "constant" (default) or "cosine" down to minLr at totalSteps. */
  kind?: "constant" | "cosine";
  /** Total steps (required for cosine). */
  totalSteps?: number;
  /** Final learning rate of the cosine schedule. Default 0. */
  minLr?: number;
}

/** Learning rate for 0-based step `step`. */
export function learningRateAt(cfg: LrScheduleConfig, step: number): number {
  const warm = cfg.warmupSteps ?? 0;
  if (!(cfg.lr >= 0)) throw new Error(`lr must be ≥ 0, got ${cfg.lr}`);
  if (!Number.isInteger(warm) || warm < 0)
    throw new Error(`warmupSteps must be a non-negative integer, got ${warm}`);
  if (step < warm) return (cfg.lr * (step + 1)) / warm;
  const kind = cfg.kind ?? "constant";
  if (kind === "constant") return cfg.lr;
  if (kind !== "cosine")
    throw new Error(`unknown LR schedule ${JSON.stringify(kind)} (known: constant, cosine)`);
  const total = cfg.totalSteps;
  if (total === undefined || !Number.isInteger(total) || total <= warm) {
    throw new Error(`cosine schedule needs totalSteps > warmupSteps, got ${total}`);
  }
  const minLr = cfg.minLr ?? 0;
  const progress = Math.min(1, (step - warm) / (total - warm));
  return minLr + 0.5 * (cfg.lr - minLr) * (1 + Math.cos(Math.PI * progress));
}
