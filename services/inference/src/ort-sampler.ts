import {
  checkPromptsSeeds,
  type ImageBatch,
  type ImproveOptions,
  type NoiseSchedule,
  NoiseSource,
  type ResolvedSamplerOptions,
  resolveSamplerOptions,
  SAMPLER_DEFAULTS,
  type SampleOptions,
  type SamplerKind,
  type SamplerOptions,
  samplingTimesteps,
  stepSigma,
} from "@idpo/diffusion";
import type { OrtDiffusionModel, OrtTextEmbedding } from "./ort-model.js";

// The denoising loop of libs/diffusion's samplers.ts on host arrays, with ε from ONNX Runtime. Every
// elementwise operation rounds to float32 as the tfjs op it mirrors does (Math.fround after each op, in
// the same order), so the only differences from the tfjs sampler are the UNet's own float32 rounding.

const f = Math.fround;

/**
 * One reverse step x_t → x_{t'} on host arrays: samplerStep of libs/diffusion (x̂₀ clipped to [−1, 1]
 * and ε̂ recomputed from the clipped x̂₀ when `clipDenoised`). Returns a new array.
 */
export function hostSamplerStep(
  schedule: NoiseSchedule,
  kind: SamplerKind,
  x: Float32Array,
  eps: Float32Array,
  t: number,
  tPrev: number,
  opts: { eta: number; clipDenoised: boolean; noise?: Float32Array },
): Float32Array {
  const ab = schedule.alphasCumprod[t];
  const abPrev = tPrev >= 0 ? schedule.alphasCumprod[tPrev] : 1;
  const sigma = stepSigma(kind, ab, abPrev, opts.eta);
  if (sigma > 0 && !opts.noise)
    throw new Error("hostSamplerStep: this step has a variance but no noise was given");
  if (kind !== "ddim" && kind !== "ddpm")
    throw new Error(`unknown sampler ${JSON.stringify(kind)} (known: ddim, ddpm)`);
  const sq1 = f(Math.sqrt(1 - ab));
  const sqa = f(Math.sqrt(ab));
  const alpha = ab / abPrev;
  const c0 = f((Math.sqrt(abPrev) * (1 - alpha)) / (1 - ab));
  const ct = f((Math.sqrt(alpha) * (1 - abPrev)) / (1 - ab));
  const sqPrev = f(Math.sqrt(abPrev));
  const dir = f(Math.sqrt(Math.max(0, 1 - abPrev - sigma * sigma)));
  const sig = f(sigma);
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let x0 = f(f(x[i] - f(eps[i] * sq1)) / sqa);
    let e = eps[i];
    if (opts.clipDenoised) {
      x0 = Math.min(1, Math.max(-1, x0));
      e = f(f(x[i] - f(x0 * sqa)) / sq1);
    }
    let mean = kind === "ddpm" ? f(f(x0 * c0) + f(x[i] * ct)) : f(f(x0 * sqPrev) + f(e * dir));
    if (sigma > 0 && opts.noise) mean = f(mean + f(opts.noise[i] * sig));
    out[i] = mean;
  }
  return out;
}

/** Classifier-free guidance ε_u + g·(ε_c − ε_u) on the two halves of a `[2m, ...]` prediction. */
function cfg(eps: Float32Array, g: number): Float32Array {
  const half = eps.length / 2;
  const out = new Float32Array(half);
  const gs = f(g);
  for (let i = 0; i < half; i++) out[i] = f(eps[half + i] + f(f(eps[i] - eps[half + i]) * gs));
  return out;
}

/** Double guidance (Eq. 9) on the three thirds (image+text, image, none) of a `[3m, ...]` prediction. */
function doubleGuidance(eps: Float32Array, sT: number, sI: number): Float32Array {
  const third = eps.length / 3;
  const out = new Float32Array(third);
  const t = f(sT);
  const im = f(sI);
  for (let i = 0; i < third; i++) {
    const it = eps[i];
    const io = eps[third + i];
    const none = eps[2 * third + i];
    out[i] = f(f(none + f(f(io - none) * im)) + f(f(it - io) * t));
  }
  return out;
}

function repeat(a: Float32Array, times: number): Float32Array {
  const out = new Float32Array(a.length * times);
  for (let k = 0; k < times; k++) out.set(a, k * a.length);
  return out;
}

/** Model space [−1, 1] → [0, 1] images, clipped. */
function toImages(x: Float32Array, n: number, S: number): ImageBatch {
  const data = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) data[i] = Math.min(1, Math.max(0, f(f(x[i] * 0.5) + 0.5)));
  return { n, height: S, width: S, channels: 3, data };
}

const yieldToEventLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Progress {
  done: number;
  total: number;
  opts: SamplerOptions;
}

/** The shared denoising loop; `predict` returns the guided ε̂ for the current x and t. */
async function denoise(
  model: OrtDiffusionModel,
  seeds: readonly number[],
  r: ResolvedSamplerOptions,
  predict: (x: Float32Array, t: number) => Promise<Float32Array>,
  progress: Progress,
  start?: { x0: Float32Array; strength: number },
): Promise<Float32Array> {
  const u = model.config.unet;
  const schedule = model.schedule;
  let ts = samplingTimesteps(schedule.timesteps, r.steps);
  const noise = new NoiseSource(seeds, [u.imageSize, u.imageSize, u.inChannels]);
  let x = noise.nextValues();
  if (start && start.strength < 1) {
    const keep = Math.max(1, Math.round(r.steps * start.strength));
    ts = ts.slice(r.steps - keep);
    const ab = schedule.alphasCumprod[ts[0]];
    const a = f(Math.sqrt(ab));
    const b = f(Math.sqrt(1 - ab));
    for (let i = 0; i < x.length; i++) x[i] = f(f(start.x0[i] * a) + f(x[i] * b));
    progress.total -= r.steps - keep;
  }
  for (let i = 0; i < ts.length; i++) {
    progress.opts.signal?.throwIfAborted();
    const t = ts[i];
    const tPrev = i + 1 < ts.length ? ts[i + 1] : -1;
    const eps = await predict(x, t);
    const ab = schedule.alphasCumprod[t];
    const abPrev = tPrev >= 0 ? schedule.alphasCumprod[tPrev] : 1;
    const z = stepSigma(r.sampler, ab, abPrev, r.eta) > 0 ? noise.nextValues() : undefined;
    x = hostSamplerStep(schedule, r.sampler, x, eps, t, tPrev, {
      eta: r.eta,
      clipDenoised: r.clipDenoised,
      noise: z,
    });
    progress.done++;
    progress.opts.onProgress?.(progress.done, progress.total);
    await yieldToEventLoop();
  }
  return x;
}

function assertPixelSpace(model: OrtDiffusionModel): void {
  if (model.config.codec !== "identity")
    throw new Error(
      `the ONNX sampler works in pixel space; codec ${JSON.stringify(model.config.codec)} is not supported`,
    );
}

function concat(parts: Float32Array[]): Float32Array {
  if (parts.length === 1) return parts[0];
  const out = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Text-to-image sampling with classifier-free guidance on ONNX Runtime: the options and the output of
 * libs/diffusion's sample(), image for image (same per-image noise streams, same step rule).
 */
export async function ortSample(model: OrtDiffusionModel, opts: SampleOptions): Promise<ImageBatch> {
  if (model.kind !== "policy")
    throw new Error("sample: expects a text-to-image policy; use improve() for an improver");
  assertPixelSpace(model);
  checkPromptsSeeds(opts.prompts, opts.seeds);
  const r = resolveSamplerOptions(opts, model.schedule.timesteps);
  const g = opts.guidanceScale ?? SAMPLER_DEFAULTS.guidanceScale;
  if (!Number.isFinite(g)) throw new Error(`guidanceScale must be a finite number, got ${g}`);
  const n = opts.prompts.length;
  const S = model.imageSize;
  const per = model.imageElements;
  if (n === 0) return { n: 0, height: S, width: S, channels: 3, data: new Float32Array(0) };
  const progress: Progress = { done: 0, total: Math.ceil(n / r.batchSize) * r.steps, opts };
  const parts: Float32Array[] = [];
  for (let s = 0; s < n; s += r.batchSize) {
    const e = Math.min(n, s + r.batchSize);
    const m = e - s;
    const guided = g !== 1;
    const prompts = opts.prompts.slice(s, e);
    const text = await model.encodeText(guided ? [...prompts, ...new Array<string>(m).fill("")] : prompts);
    const x = await denoise(
      model,
      opts.seeds.slice(s, e),
      r,
      async (xt, t) => {
        const steps = new Array<number>(text.n).fill(t);
        if (!guided) return model.predictEps(xt, steps, text);
        return cfg(await model.predictEps(repeat(xt, 2), steps, text), g);
      },
      progress,
    );
    parts.push(x);
  }
  const all = concat(parts);
  if (all.length !== n * per) throw new Error("sample: internal size mismatch");
  return toImages(all, n, S);
}

/**
 * Image improvement with double guidance on ONNX Runtime (the three branches in one batched forward
 * pass), with SDEdit's start from the noised input when strength < 1: the options and the output of
 * libs/diffusion's improve().
 */
export async function ortImprove(model: OrtDiffusionModel, opts: ImproveOptions): Promise<ImageBatch> {
  if (model.kind !== "improver")
    throw new Error("improve: expects an improvement model (a UNet with condition channels)");
  assertPixelSpace(model);
  const S = model.imageSize;
  const im = opts.images;
  if (!im || im.height !== S || im.width !== S || im.channels !== 3 || im.data.length !== im.n * S * S * 3)
    throw new Error(`improve: images must be a batch of ${S}x${S} RGB images`);
  checkPromptsSeeds(opts.prompts, opts.seeds, im.n);
  const r = resolveSamplerOptions(opts, model.schedule.timesteps);
  const sT = opts.sT ?? SAMPLER_DEFAULTS.sT;
  const sI = opts.sI ?? SAMPLER_DEFAULTS.sI;
  const strength = opts.strength ?? SAMPLER_DEFAULTS.strength;
  if (!Number.isFinite(sT) || !Number.isFinite(sI))
    throw new Error(`sT and sI must be finite, got ${sT}, ${sI}`);
  if (!(strength > 0 && strength <= 1)) throw new Error(`strength must be in (0, 1], got ${strength}`);
  const n = im.n;
  const per = S * S * 3;
  if (n === 0) return { n: 0, height: S, width: S, channels: 3, data: new Float32Array(0) };
  const progress: Progress = { done: 0, total: Math.ceil(n / r.batchSize) * r.steps, opts };
  const parts: Float32Array[] = [];
  for (let s = 0; s < n; s += r.batchSize) {
    const e = Math.min(n, s + r.batchSize);
    const m = e - s;
    const empty = new Array<string>(m).fill("");
    const text: OrtTextEmbedding = await model.encodeText([...opts.prompts.slice(s, e), ...empty, ...empty]);
    const cond = new Float32Array(m * per);
    for (let i = 0; i < cond.length; i++) cond[i] = f(f(im.data[s * per + i] * 2) - 1);
    // Condition images of the three branches: (x, c), (x, ∅), (∅, ∅), the ∅ image being zeros.
    const cond3 = new Float32Array(3 * m * per);
    cond3.set(cond, 0);
    cond3.set(cond, m * per);
    const x = await denoise(
      model,
      opts.seeds.slice(s, e),
      r,
      async (xt, t) =>
        doubleGuidance(
          await model.predictEps(repeat(xt, 3), new Array<number>(3 * m).fill(t), text, cond3),
          sT,
          sI,
        ),
      progress,
      { x0: cond, strength },
    );
    parts.push(x);
  }
  return toImages(concat(parts), n, S);
}
