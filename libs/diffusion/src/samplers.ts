import * as tf from "@tensorflow/tfjs-core";
import { classifierFreeGuidance, doubleGuidance } from "./guidance.js";
import {
  assertImageBatch,
  concatImages,
  type ImageBatch,
  imagesToTensor,
  sliceImages,
  tensorToImages,
} from "./image-batch.js";
import type { DiffusionModel } from "./model.js";
import type { NoiseSchedule } from "./noise-schedule.js";
import { assertSeed, Rng } from "./rng.js";
import { disposeTextEmbedding } from "./text-encoder.js";

/** "ddim": deterministic for η = 0 (Song et al.); "ddpm": ancestral sampling with the posterior variance. */
export type SamplerKind = "ddim" | "ddpm";

/** Options shared by sample() and improve(). */
export interface SamplerOptions {
  /** Denoising steps (1..T), spaced evenly over [0, T) ending at T − 1. Default 20. */
  steps?: number;
  /** Update rule. Default "ddim". */
  sampler?: SamplerKind;
  /** DDIM's η (0 deterministic, 1 = DDPM's variance); ignored by "ddpm". Default 0. */
  eta?: number;
  /** Clip each step's x̂₀ to [-1, 1] (as diffusers does by default). Default true. */
  clipDenoised?: boolean;
  /** Images denoised together per forward pass (memory bound; outputs do not depend on it). Default 32. */
  batchSize?: number;
  /** Called after every denoising step of every chunk with (steps done, steps total). */
  onProgress?: (done: number, total: number) => void;
  /** Aborts between steps with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of sample(). */
export interface SampleOptions extends SamplerOptions {
  /** One prompt per image ("" = unconditional). */
  prompts: readonly string[];
  /** One seed per image; image i depends only on (its prompt, its seed, the settings). */
  seeds: readonly number[];
  /** Classifier-free guidance scale; 1 disables guidance (one evaluation per step). Default 3. */
  guidanceScale?: number;
}

/** Options of improve(). */
export interface ImproveOptions extends SamplerOptions {
  /** The images to improve, at the improver's resolution, [0, 1]. */
  images: ImageBatch;
  /** One prompt per image. */
  prompts: readonly string[];
  /** One seed per image. */
  seeds: readonly number[];
  /** Text guidance scale s_T. Default 3.5 (the paper's). */
  sT?: number;
  /** Image guidance scale s_I. Default 3.0 (the paper's). */
  sI?: number;
  /**
   * Fraction of the trajectory to run: 1 (default) starts from pure noise as InstructPix2Pix
   * does; s < 1 starts from the input image noised to the step at fraction s (SDEdit).
   */
  strength?: number;
}

/** Default settings, documented in one place. */
export const SAMPLER_DEFAULTS = {
  steps: 20,
  sampler: "ddim" as SamplerKind,
  eta: 0,
  clipDenoised: true,
  batchSize: 32,
  guidanceScale: 3,
  sT: 3.5,
  sI: 3.0,
  strength: 1,
};

/** The timesteps visited, descending: round(T − i·T/steps) − 1 for i = 0..steps−1 (starts at T − 1). */
export function samplingTimesteps(T: number, steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1 || steps > T) {
    throw new Error(`steps must be an integer in [1, ${T}], got ${steps}`);
  }
  const out: number[] = [];
  for (let i = 0; i < steps; i++) out.push(Math.round(T - (i * T) / steps) - 1);
  return out;
}

/**
 * One reverse step x_t → x_{t'} (t' = tPrev, −1 for the final step where ᾱ = 1) given ε̂.
 * With clipDenoised, x̂₀ is clipped to [−1, 1] and ε̂ is recomputed from the clipped x̂₀ as
 * (x_t − √ᾱ_t·x̂₀)/√(1 − ᾱ_t), so DDIM's direction term and DDPM's posterior mean agree on one x̂₀.
 * `noise` (same shape as x) is used when the step has a variance (ddpm, or ddim with η > 0).
 * Returns the new tensor; inputs are not disposed.
 */
export function samplerStep(
  schedule: NoiseSchedule,
  kind: SamplerKind,
  x: tf.Tensor4D,
  eps: tf.Tensor4D,
  t: number,
  tPrev: number,
  opts: { eta?: number; clipDenoised?: boolean; noise?: tf.Tensor4D } = {},
): tf.Tensor4D {
  const ab = schedule.alphasCumprod[t];
  const abPrev = tPrev >= 0 ? schedule.alphasCumprod[tPrev] : 1;
  const sigma = stepSigma(kind, ab, abPrev, opts.eta ?? 0);
  if (sigma > 0 && !opts.noise)
    throw new Error("samplerStep: this step has a variance but no noise was given");
  return tf.tidy(() => {
    let x0 = tf.div(tf.sub(x, tf.mul(eps, Math.sqrt(1 - ab))), Math.sqrt(ab));
    let epsUsed: tf.Tensor = eps;
    if (opts.clipDenoised ?? true) {
      x0 = tf.clipByValue(x0, -1, 1);
      // The step must point at the x̂₀ it commits to: with guidance the extrapolated ε̂ is large and
      // x̂₀ clips often, and keeping the unclipped ε̂ in DDIM's direction term lands on another image
      // (it cost the shapes16 base ~0.085 oracle reward). This is diffusers' use_clipped_model_output.
      epsUsed = tf.div(tf.sub(x, tf.mul(x0, Math.sqrt(ab))), Math.sqrt(1 - ab));
    }
    let mean: tf.Tensor;
    if (kind === "ddpm") {
      const alpha = ab / abPrev;
      const c0 = (Math.sqrt(abPrev) * (1 - alpha)) / (1 - ab);
      const ct = (Math.sqrt(alpha) * (1 - abPrev)) / (1 - ab);
      mean = tf.add(tf.mul(x0, c0), tf.mul(x, ct));
    } else if (kind === "ddim") {
      const dir = Math.sqrt(Math.max(0, 1 - abPrev - sigma * sigma));
      mean = tf.add(tf.mul(x0, Math.sqrt(abPrev)), tf.mul(epsUsed, dir));
    } else {
      throw new Error(`unknown sampler ${JSON.stringify(kind)} (known: ddim, ddpm)`);
    }
    return (sigma > 0 && opts.noise ? tf.add(mean, tf.mul(opts.noise, sigma)) : mean) as tf.Tensor4D;
  });
}

/** Standard deviation of a reverse step's noise. */
export function stepSigma(kind: SamplerKind, ab: number, abPrev: number, eta: number): number {
  const posterior = ((1 - abPrev) / (1 - ab)) * (1 - ab / abPrev);
  if (kind === "ddpm") return Math.sqrt(Math.max(0, posterior));
  return eta * Math.sqrt(Math.max(0, posterior));
}

/** SamplerOptions with every default filled in. */
export interface ResolvedSamplerOptions {
  steps: number;
  sampler: SamplerKind;
  eta: number;
  clipDenoised: boolean;
  batchSize: number;
}

/** Fills in the defaults and validates, throwing a message that names the bad option. */
export function resolveSamplerOptions(opts: SamplerOptions, T: number): ResolvedSamplerOptions {
  const r: ResolvedSamplerOptions = {
    steps: opts.steps ?? SAMPLER_DEFAULTS.steps,
    sampler: opts.sampler ?? SAMPLER_DEFAULTS.sampler,
    eta: opts.eta ?? SAMPLER_DEFAULTS.eta,
    clipDenoised: opts.clipDenoised ?? SAMPLER_DEFAULTS.clipDenoised,
    batchSize: opts.batchSize ?? SAMPLER_DEFAULTS.batchSize,
  };
  samplingTimesteps(T, r.steps);
  if (r.sampler !== "ddim" && r.sampler !== "ddpm")
    throw new Error(`sampler must be "ddim" or "ddpm", got ${r.sampler}`);
  if (!(r.eta >= 0 && r.eta <= 1)) throw new Error(`eta must be in [0, 1], got ${r.eta}`);
  if (!Number.isInteger(r.batchSize) || r.batchSize < 1)
    throw new Error(`batchSize must be a positive integer, got ${r.batchSize}`);
  return r;
}

/** Throws unless there is one string prompt and one valid seed per image (and `n` images when given). */
export function checkPromptsSeeds(prompts: readonly string[], seeds: readonly number[], n?: number): void {
  if (!Array.isArray(prompts)) throw new Error("prompts must be an array of strings");
  if (!Array.isArray(seeds)) throw new Error("seeds must be an array of integers");
  if (seeds.length !== prompts.length) {
    throw new Error(`got ${prompts.length} prompts and ${seeds.length} seeds; give one seed per image`);
  }
  if (n !== undefined && prompts.length !== n)
    throw new Error(`got ${n} images and ${prompts.length} prompts`);
  for (let i = 0; i < prompts.length; i++) {
    if (typeof prompts[i] !== "string") throw new Error(`prompts[${i}] is not a string`);
    assertSeed(seeds[i], `seeds[${i}]`);
  }
}

/** Per-image noise streams: image i draws only from Rng(seed_i). */
export class NoiseSource {
  private readonly rngs: Rng[];
  constructor(
    seeds: readonly number[],
    private readonly shape: [number, number, number],
  ) {
    this.rngs = seeds.map((s) => new Rng(s));
  }
  /** The next draw for every image, `[n, ...shape]` row-major. */
  nextValues(): Float32Array {
    const per = this.shape[0] * this.shape[1] * this.shape[2];
    const data = new Float32Array(per * this.rngs.length);
    for (let i = 0; i < this.rngs.length; i++) this.rngs[i].normals(per, data, i * per);
    return data;
  }
  /** The next draw as a tensor. */
  next(): tf.Tensor4D {
    return tf.tensor4d(this.nextValues(), [this.rngs.length, ...this.shape]);
  }
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** The shared denoising loop; `predict` returns the (guided) ε̂ for the current x and t. */
async function denoise(
  model: DiffusionModel,
  seeds: readonly number[],
  r: ResolvedSamplerOptions,
  predict: (x: tf.Tensor4D, t: number) => tf.Tensor4D,
  progress: { done: number; total: number; opts: SamplerOptions },
  start?: { x0: tf.Tensor4D; strength: number },
): Promise<tf.Tensor4D> {
  const u = model.config.unet;
  const T = model.schedule.timesteps;
  let ts = samplingTimesteps(T, r.steps);
  const noise = new NoiseSource(seeds, [u.imageSize, u.imageSize, u.inChannels]);
  let x = noise.next();
  if (start && start.strength < 1) {
    const keep = Math.max(1, Math.round(r.steps * start.strength));
    ts = ts.slice(r.steps - keep);
    const ab = model.schedule.alphasCumprod[ts[0]];
    const z = x;
    x = tf.tidy(() => tf.add(tf.mul(start.x0, Math.sqrt(ab)), tf.mul(z, Math.sqrt(1 - ab))));
    z.dispose();
    progress.total -= r.steps - keep;
  }
  try {
    for (let i = 0; i < ts.length; i++) {
      progress.opts.signal?.throwIfAborted();
      const t = ts[i];
      const tPrev = i + 1 < ts.length ? ts[i + 1] : -1;
      const eps = predict(x, t);
      const ab = model.schedule.alphasCumprod[t];
      const abPrev = tPrev >= 0 ? model.schedule.alphasCumprod[tPrev] : 1;
      const z = stepSigma(r.sampler, ab, abPrev, r.eta) > 0 ? noise.next() : undefined;
      const next = samplerStep(model.schedule, r.sampler, x, eps, t, tPrev, {
        eta: r.eta,
        clipDenoised: r.clipDenoised,
        noise: z,
      });
      tf.dispose([x, eps, z]);
      x = next;
      progress.done++;
      progress.opts.onProgress?.(progress.done, progress.total);
      await yieldToEventLoop();
    }
  } catch (e) {
    x.dispose();
    throw e;
  }
  return x;
}

/**
 * Text-to-image sampling with classifier-free guidance (conditional and unconditional halves in one
 * forward pass). Returns [0, 1] images; image i depends only on its prompt, its seed and the settings.
 */
export async function sample(model: DiffusionModel, opts: SampleOptions): Promise<ImageBatch> {
  if (model.kind !== "policy")
    throw new Error("sample: expects a text-to-image policy; use improve() for an improver");
  checkPromptsSeeds(opts.prompts, opts.seeds);
  const r = resolveSamplerOptions(opts, model.schedule.timesteps);
  const g = opts.guidanceScale ?? SAMPLER_DEFAULTS.guidanceScale;
  if (!Number.isFinite(g)) throw new Error(`guidanceScale must be a finite number, got ${g}`);
  const n = opts.prompts.length;
  const S = model.imageSize;
  if (n === 0) return { n: 0, height: S, width: S, channels: 3, data: new Float32Array(0) };
  const progress = { done: 0, total: Math.ceil(n / r.batchSize) * r.steps, opts };
  const parts: ImageBatch[] = [];
  for (let s = 0; s < n; s += r.batchSize) {
    const e = Math.min(n, s + r.batchSize);
    const prompts = opts.prompts.slice(s, e);
    const m = e - s;
    const guided = g !== 1;
    const text = model.encodeText(guided ? [...prompts, ...new Array<string>(m).fill("")] : prompts);
    try {
      const x = await denoise(
        model,
        opts.seeds.slice(s, e),
        r,
        (xt, t) =>
          tf.tidy(() => {
            if (!guided) return model.predictEps(xt, t, text);
            const eps = model.predictEps(tf.concat([xt, xt], 0), t, text);
            const [c, u] = tf.split(eps, 2, 0) as tf.Tensor4D[];
            return classifierFreeGuidance(c, u, g);
          }),
        progress,
      );
      const img = tf.tidy(() => model.codec.decode(x));
      x.dispose();
      parts.push(await tensorToImages(img));
      img.dispose();
    } finally {
      disposeTextEmbedding(text);
    }
  }
  return parts.length === 1 ? parts[0] : concatImages(parts);
}

/**
 * Image improvement with the improvement model and double guidance (Eq. 9): the three evaluations
 * (image+text, image only, neither) of each step run as one batched forward pass.
 */
export async function improve(improver: DiffusionModel, opts: ImproveOptions): Promise<ImageBatch> {
  if (improver.kind !== "improver")
    throw new Error("improve: expects an improvement model (a UNet with condition channels)");
  const S = improver.imageSize;
  assertImageBatch(opts.images, "improve: images", S);
  checkPromptsSeeds(opts.prompts, opts.seeds, opts.images.n);
  const r = resolveSamplerOptions(opts, improver.schedule.timesteps);
  const sT = opts.sT ?? SAMPLER_DEFAULTS.sT;
  const sI = opts.sI ?? SAMPLER_DEFAULTS.sI;
  const strength = opts.strength ?? SAMPLER_DEFAULTS.strength;
  if (!Number.isFinite(sT) || !Number.isFinite(sI))
    throw new Error(`sT and sI must be finite, got ${sT}, ${sI}`);
  if (!(strength > 0 && strength <= 1)) throw new Error(`strength must be in (0, 1], got ${strength}`);
  const n = opts.images.n;
  if (n === 0) return { n: 0, height: S, width: S, channels: 3, data: new Float32Array(0) };
  const progress = { done: 0, total: Math.ceil(n / r.batchSize) * r.steps, opts };
  const parts: ImageBatch[] = [];
  for (let s = 0; s < n; s += r.batchSize) {
    const e = Math.min(n, s + r.batchSize);
    const m = e - s;
    const empty = new Array<string>(m).fill("");
    const text = improver.encodeText([...opts.prompts.slice(s, e), ...empty, ...empty]);
    const pixels = imagesToTensor(sliceImages(opts.images, s, e));
    const cond = tf.tidy(() => improver.codec.encode(pixels));
    // Condition images for the three branches: (x, c), (x, ∅), (∅, ∅) with ∅ image = zeros.
    const cond3 = tf.tidy(() => tf.concat([cond, cond, tf.zerosLike(cond)], 0));
    try {
      const x = await denoise(
        improver,
        opts.seeds.slice(s, e),
        r,
        (xt, t) =>
          tf.tidy(() => {
            const eps = improver.predictEps(tf.concat([xt, xt, xt], 0), t, text, cond3);
            const [it, io, none] = tf.split(eps, 3, 0) as tf.Tensor4D[];
            return doubleGuidance(it, io, none, sT, sI);
          }),
        progress,
        { x0: cond, strength },
      );
      const img = tf.tidy(() => improver.codec.decode(x));
      x.dispose();
      parts.push(await tensorToImages(img));
      img.dispose();
    } finally {
      disposeTextEmbedding(text);
      tf.dispose([pixels, cond, cond3]);
    }
  }
  return parts.length === 1 ? parts[0] : concatImages(parts);
}
