import { Code, ConnectError } from "@connectrpc/connect";
import { type ImageBatch, SAMPLER_DEFAULTS, type SamplerKind } from "@idpo/diffusion";
import { imagesFromMessages } from "@idpo/mesh";
import {
  Dtype,
  ImageFormat,
  type PredictEpsRequest,
  type SampleImagesRequest,
  Sampler,
  type Tensor,
} from "@idpo/proto";
import type { OrtDiffusionModel } from "./ort-model.js";

/** Contract limits of inference_service.proto. */
export const INFERENCE_LIMITS = {
  maxImages: 1024,
  maxPromptChars: 512,
  maxScale: 30,
} as const;

function invalid(msg: string): ConnectError {
  return new ConnectError(msg, Code.InvalidArgument);
}

function checkPrompts(prompts: readonly string[], n: number, field = "prompts"): string[] {
  if (prompts.length !== 1 && prompts.length !== n)
    throw invalid(
      `${field}: got ${prompts.length} prompts for ${n} images (give one for all, or one per image)`,
    );
  for (let i = 0; i < prompts.length; i++) {
    if (prompts[i].length > INFERENCE_LIMITS.maxPromptChars)
      throw invalid(
        `${field}[${i}]: ${prompts[i].length} characters is more than ${INFERENCE_LIMITS.maxPromptChars}`,
      );
  }
  return Array.from({ length: n }, (_, i) => (prompts.length === 1 ? prompts[0] : prompts[i]));
}

function scale(v: number, field: string): number {
  if (!Number.isFinite(v) || v < 0 || v > INFERENCE_LIMITS.maxScale)
    throw invalid(`${field}: ${v} is outside [0, ${INFERENCE_LIMITS.maxScale}]`);
  return v;
}

/** A FLOAT32 tensor of exactly `shape`, as host values (rejecting non-finite ones). */
export function floatTensor(t: Tensor | undefined, shape: readonly number[], field: string): Float32Array {
  if (!t) throw invalid(`${field}: required`);
  if (t.dtype !== Dtype.FLOAT32) throw invalid(`${field}: dtype must be DTYPE_FLOAT32`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))
    throw invalid(`${field}: shape [${t.shape.join(", ")}] is not [${shape.join(", ")}]`);
  const count = shape.reduce((a, b) => a * b, 1);
  if (t.data.byteLength !== count * 4)
    throw invalid(`${field}: ${t.data.byteLength} bytes, the shape needs ${count * 4}`);
  const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const v = view.getFloat32(i * 4, true);
    if (!Number.isFinite(v)) throw invalid(`${field}: element ${i} is ${v}`);
    out[i] = v;
  }
  return out;
}

/** Host values as a FLOAT32 tensor message. */
export function tensorMessage(
  data: Float32Array,
  shape: number[],
): { shape: number[]; dtype: Dtype; data: Uint8Array } {
  const bytes = new Uint8Array(data.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < data.length; i++) view.setFloat32(i * 4, data[i], true);
  return { shape, dtype: Dtype.FLOAT32, data: bytes };
}

/** A validated PredictEps call. */
export interface ParsedPredict {
  n: number;
  xt: Float32Array;
  t: number[];
  prompts: string[];
  cond?: Float32Array;
}

/** Validates a PredictEps request against the model that will run it. */
export function parsePredict(req: PredictEpsRequest, model: OrtDiffusionModel): ParsedPredict {
  const u = model.config.unet;
  const S = u.imageSize;
  const n = req.xT?.shape[0] ?? 0;
  if (!Number.isInteger(n) || n < 1 || n > INFERENCE_LIMITS.maxImages)
    throw invalid(`x_t: batch size ${n} is outside [1, ${INFERENCE_LIMITS.maxImages}]`);
  const xt = floatTensor(req.xT, [n, S, S, u.inChannels], "x_t");
  if (req.timesteps.length !== 1 && req.timesteps.length !== n)
    throw invalid(
      `timesteps: got ${req.timesteps.length} for a batch of ${n} (give one for all, or one per image)`,
    );
  const T = model.schedule.timesteps;
  req.timesteps.forEach((v, i) => {
    if (v >= T) throw invalid(`timesteps[${i}]: ${v} is not in [0, ${T})`);
  });
  const t = Array.from({ length: n }, (_, i) => req.timesteps[req.timesteps.length === 1 ? 0 : i]);
  const prompts = checkPrompts(req.prompts, n);
  let cond: Float32Array | undefined;
  if (model.kind === "improver") cond = floatTensor(req.condition, [n, S, S, u.condChannels], "condition");
  else if (req.condition) throw invalid("condition: a policy model takes no condition image");
  return { n, xt, t, prompts, cond };
}

/** A validated SampleImages call: the settings its images share and the per-image inputs. */
export interface ParsedSample {
  prompts: string[];
  seeds: number[];
  /** Condition images in [0, 1] (improver only). */
  images?: ImageBatch;
  steps: number;
  sampler: SamplerKind;
  eta: number;
  clipDenoised: boolean;
  /** Classifier-free guidance scale (policy). */
  guidanceScale: number;
  /** Double guidance (improver). */
  sT: number;
  sI: number;
  strength: number;
  format: ImageFormat;
  /** The batching key: images with equal keys can be sampled together. */
  key: string;
}

/** Validates a SampleImages request against the model that will run it. */
export function parseSample(req: SampleImagesRequest, model: OrtDiffusionModel): ParsedSample {
  const n = req.prompts.length;
  if (n === 0) throw invalid("prompts: at least one prompt is required");
  if (n > INFERENCE_LIMITS.maxImages)
    throw invalid(`prompts: ${n} is more than the limit of ${INFERENCE_LIMITS.maxImages}`);
  const prompts = checkPrompts(req.prompts, n);
  const seeds = parseSeeds(req.seeds, n);
  const T = model.schedule.timesteps;
  if (req.steps > T) throw invalid(`steps: ${req.steps} is more than the model's ${T} timesteps`);
  const steps = req.steps === 0 ? SAMPLER_DEFAULTS.steps : req.steps;
  const sampler = parseSampler(req.sampler);
  if (!(req.eta >= 0 && req.eta <= 1)) throw invalid(`eta: ${req.eta} is outside [0, 1]`);
  const format = parseFormat(req.outputFormat);
  const clipDenoised = req.clipDenoised ?? true;
  const { guidanceScale, sT, sI, strength, images } =
    model.kind === "policy" ? policyGuidance(req) : improverGuidance(req, model, n);
  const key = [
    model.kind,
    steps,
    sampler,
    eta(req.eta, sampler),
    clipDenoised,
    guidanceScale,
    sT,
    sI,
    strength,
  ].join("|");
  return {
    prompts,
    seeds,
    images,
    steps,
    sampler,
    eta: req.eta,
    clipDenoised,
    guidanceScale,
    sT,
    sI,
    strength,
    format,
    key,
  };
}

function parseSeeds(seeds: readonly bigint[], n: number): number[] {
  if (seeds.length !== n)
    throw invalid(`seeds: got ${seeds.length} seeds for ${n} prompts (give one per image)`);
  return seeds.map((s, i) => {
    if (s > BigInt(Number.MAX_SAFE_INTEGER))
      throw invalid(`seeds[${i}]: ${s} exceeds the largest seed ${Number.MAX_SAFE_INTEGER}`);
    return Number(s);
  });
}

function parseSampler(sampler: Sampler): SamplerKind {
  if (sampler === Sampler.UNSPECIFIED || sampler === Sampler.DDIM) return "ddim";
  if (sampler === Sampler.DDPM) return "ddpm";
  throw invalid(`sampler: unknown sampler ${sampler}`);
}

function parseFormat(format: ImageFormat): ImageFormat {
  if (format === ImageFormat.UNSPECIFIED || format === ImageFormat.PNG) return ImageFormat.PNG;
  if (format === ImageFormat.TENSOR) return ImageFormat.TENSOR;
  throw invalid(`output_format: unknown image format ${format}`);
}

/** A SampleImages call's guidance scales, SDEdit strength and condition images. */
type SampleGuidance = Pick<ParsedSample, "guidanceScale" | "sT" | "sI" | "strength" | "images">;

/** A policy: classifier-free guidance only, no condition image, no SDEdit. */
function policyGuidance(req: SampleImagesRequest): SampleGuidance {
  let guidanceScale: number = SAMPLER_DEFAULTS.guidanceScale;
  if (req.guidance.case === "double")
    throw invalid("double: double guidance needs an improver; this is a policy");
  if (req.guidance.case === "classifierFree")
    guidanceScale = scale(req.guidance.value.scale, "classifier_free.scale");
  if (req.conditionImages.length > 0)
    throw invalid("condition_images: a policy model takes no condition image");
  if (req.strength !== undefined)
    throw invalid("strength: SDEdit starts from a condition image; this is a policy");
  return { guidanceScale, sT: SAMPLER_DEFAULTS.sT, sI: SAMPLER_DEFAULTS.sI, strength: 1, images: undefined };
}

/** An improver: double guidance, one condition image per prompt, an optional SDEdit strength. */
function improverGuidance(req: SampleImagesRequest, model: OrtDiffusionModel, n: number): SampleGuidance {
  let sT: number = SAMPLER_DEFAULTS.sT;
  let sI: number = SAMPLER_DEFAULTS.sI;
  if (req.guidance.case === "classifierFree")
    throw invalid("classifier_free: an improver samples with double guidance; set double");
  if (req.guidance.case === "double") {
    sT = scale(req.guidance.value.textScale, "double.text_scale");
    sI = scale(req.guidance.value.imageScale, "double.image_scale");
  }
  if (req.conditionImages.length !== n)
    throw invalid(`condition_images: got ${req.conditionImages.length} for ${n} prompts (one per prompt)`);
  const images = imagesFromMessages(req.conditionImages, {
    field: "condition_images",
    size: model.imageSize,
  });
  const strength = req.strength ?? 1;
  if (!(strength > 0 && strength <= 1)) throw invalid(`strength: ${req.strength} is outside (0, 1]`);
  return { guidanceScale: SAMPLER_DEFAULTS.guidanceScale, sT, sI, strength, images };
}

/** DDPM ignores η: calls that differ only in it share batches. */
function eta(v: number, sampler: SamplerKind): number {
  return sampler === "ddpm" ? 0 : v;
}
