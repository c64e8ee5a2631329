/** The forward-process noise schedule (DDPM), stored in the model config. */
export interface NoiseScheduleConfig {
  /** "linear": β linear in t (DDPM); "scaled-linear": √β linear in t (Stable Diffusion). */
  kind: "linear" | "scaled-linear";
  /** Number of diffusion steps T (1000 everywhere in this project). */
  timesteps: number;
  /** β at t = 0. */
  betaStart: number;
  /** β at t = T − 1. */
  betaEnd: number;
}

/** DDPM's linear schedule, the default for pixel-space models. */
export const LINEAR_SCHEDULE: NoiseScheduleConfig = {
  kind: "linear",
  timesteps: 1000,
  betaStart: 1e-4,
  betaEnd: 0.02,
};

/** Stable Diffusion's scaled-linear schedule. */
export const SCALED_LINEAR_SCHEDULE: NoiseScheduleConfig = {
  kind: "scaled-linear",
  timesteps: 1000,
  betaStart: 0.00085,
  betaEnd: 0.012,
};

/** β_t, α_t = 1 − β_t and ᾱ_t = Π α_s, in float64, indexed by t ∈ [0, T). */
export interface NoiseSchedule {
  /** The config this was computed from. */
  config: NoiseScheduleConfig;
  /** T. */
  timesteps: number;
  betas: Float64Array;
  alphas: Float64Array;
  alphasCumprod: Float64Array;
}

/** Computes the schedule, validating the config. */
export function makeNoiseSchedule(cfg: NoiseScheduleConfig): NoiseSchedule {
  const T = cfg.timesteps;
  if (!Number.isInteger(T) || T < 2)
    throw new Error(`noise schedule: timesteps must be an integer ≥ 2, got ${T}`);
  if (!(cfg.betaStart > 0 && cfg.betaEnd < 1 && cfg.betaStart <= cfg.betaEnd)) {
    throw new Error(`noise schedule: need 0 < betaStart ≤ betaEnd < 1, got ${cfg.betaStart}, ${cfg.betaEnd}`);
  }
  const betas = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    const f = t / (T - 1);
    if (cfg.kind === "linear") {
      betas[t] = cfg.betaStart + f * (cfg.betaEnd - cfg.betaStart);
    } else if (cfg.kind === "scaled-linear") {
      const s = Math.sqrt(cfg.betaStart) + f * (Math.sqrt(cfg.betaEnd) - Math.sqrt(cfg.betaStart));
      betas[t] = s * s;
    } else {
      throw new Error(`noise schedule: unknown kind ${JSON.stringify((cfg as { kind: unknown }).kind)}`);
    }
  }
  const alphas = new Float64Array(T);
  const alphasCumprod = new Float64Array(T);
  let prod = 1;
  for (let t = 0; t < T; t++) {
    alphas[t] = 1 - betas[t];
    prod *= alphas[t];
    alphasCumprod[t] = prod;
  }
  return { config: { ...cfg }, timesteps: T, betas, alphas, alphasCumprod };
}

/** Throws unless every t is an integer in [0, T). */
export function assertTimesteps(t: ArrayLike<number>, T: number, what = "t"): void {
  for (let i = 0; i < t.length; i++) {
    const v = t[i];
    if (!Number.isInteger(v) || v < 0 || v >= T)
      throw new Error(`${what}[${i}] = ${v} is not an integer in [0, ${T})`);
  }
}
