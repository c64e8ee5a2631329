import { Code, ConnectError } from "@connectrpc/connect";
import type { SamplerKind } from "@idpo/diffusion";
import { type GenerationSpec, ImageFormat, Sampler } from "@idpo/proto";

/** Contract limits and defaults of GenerationSpec (generator_service.proto). */
export const SPEC_LIMITS = {
  maxPrompts: 4096,
  maxPromptChars: 512,
  maxImagesPerPrompt: 256,
  maxSteps: 1000,
  maxGuidance: 30,
  defaultSteps: 20,
  defaultGuidance: 3.0,
} as const;

/** A validated GenerationSpec, expanded to one entry per image (prompt-major). */
export interface ParsedSpec {
  /** Prompt of each image. */
  prompts: string[];
  /** Index into the request's prompts of each image. */
  promptIndex: number[];
  /** Seed of each image. */
  seeds: number[];
  steps: number;
  guidanceScale: number;
  sampler: SamplerKind;
  eta: number;
  format: ImageFormat;
  /** Checkpoint the caller requires ("" for any). */
  checkpointId: string;
}

function invalid(msg: string): ConnectError {
  return new ConnectError(msg, Code.InvalidArgument);
}

/**
 * Checks a GenerationSpec against the contract and expands it. `maxImages` caps prompts ×
 * images_per_prompt (`rpc` names the call in the message). Errors are INVALID_ARGUMENT naming the
 * field, e.g. "spec.prompts[3]: 600 characters is more than 512".
 */
export function parseGenerationSpec(
  spec: GenerationSpec | undefined,
  maxImages: number,
  rpc: string,
): ParsedSpec {
  if (!spec) throw invalid("spec: required");
  checkPrompts(spec.prompts);
  const per = imagesPerPrompt(spec, maxImages, rpc);
  const seeds = parseSeeds(spec, spec.prompts.length * per);
  const sampling = parseSampling(spec);
  const format = parseFormat(spec.outputFormat);
  const prompts: string[] = [];
  const promptIndex: number[] = [];
  spec.prompts.forEach((prompt, i) => {
    for (let j = 0; j < per; j++) {
      prompts.push(prompt);
      promptIndex.push(i);
    }
  });
  return { prompts, promptIndex, seeds, ...sampling, format, checkpointId: spec.checkpointId };
}

/** At least one prompt, at most `maxPrompts`, none longer than `maxPromptChars`. */
function checkPrompts(prompts: readonly string[]): void {
  const np = prompts.length;
  if (np === 0) throw invalid("spec.prompts: at least one prompt is required");
  if (np > SPEC_LIMITS.maxPrompts)
    throw invalid(`spec.prompts: ${np} prompts is more than ${SPEC_LIMITS.maxPrompts}`);
  for (let i = 0; i < np; i++) {
    if (prompts[i].length > SPEC_LIMITS.maxPromptChars) {
      throw invalid(
        `spec.prompts[${i}]: ${prompts[i].length} characters is more than ${SPEC_LIMITS.maxPromptChars}`,
      );
    }
  }
}

/** Images per prompt (0 means 1), with prompts × images_per_prompt at most `maxImages`. */
function imagesPerPrompt(spec: GenerationSpec, maxImages: number, rpc: string): number {
  if (spec.imagesPerPrompt > SPEC_LIMITS.maxImagesPerPrompt) {
    throw invalid(
      `spec.images_per_prompt: ${spec.imagesPerPrompt} is more than ${SPEC_LIMITS.maxImagesPerPrompt}`,
    );
  }
  const per = spec.imagesPerPrompt === 0 ? 1 : spec.imagesPerPrompt;
  const total = spec.prompts.length * per;
  if (total > maxImages) {
    throw invalid(
      `spec: ${total} images (prompts × images_per_prompt) is more than the limit of ${maxImages} for ${rpc}` +
        (rpc === "GenerateImages" ? "; use GenerateImagesStream" : ""),
    );
  }
  return per;
}

/** One seed per image: `spec.seeds` when given (exactly `total`), else `spec.seed`, `spec.seed + 1`, …. */
function parseSeeds(spec: GenerationSpec, total: number): number[] {
  const seeds: number[] = [];
  if (spec.seeds.length > 0) {
    if (spec.seeds.length !== total) {
      throw invalid(
        `spec.seeds: got ${spec.seeds.length} seeds, need prompts × images_per_prompt = ${total}`,
      );
    }
    for (let i = 0; i < total; i++) {
      if (spec.seeds[i] > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw invalid(
          `spec.seeds[${i}]: ${spec.seeds[i]} exceeds the largest seed ${Number.MAX_SAFE_INTEGER}`,
        );
      }
      seeds.push(Number(spec.seeds[i]));
    }
    return seeds;
  }
  if (spec.seed + BigInt(total - 1) > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw invalid(
      `spec.seed: ${spec.seed} + ${total - 1} exceeds the largest seed ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  for (let i = 0; i < total; i++) seeds.push(Number(spec.seed) + i);
  return seeds;
}

/** Steps (0 means the default), guidance scale, sampler and η, each within its limits. */
function parseSampling(
  spec: GenerationSpec,
): Pick<ParsedSpec, "steps" | "guidanceScale" | "sampler" | "eta"> {
  if (spec.steps > SPEC_LIMITS.maxSteps)
    throw invalid(`spec.steps: ${spec.steps} is more than ${SPEC_LIMITS.maxSteps}`);
  const g = spec.guidanceScale ?? SPEC_LIMITS.defaultGuidance;
  if (!Number.isFinite(g) || g < 0 || g > SPEC_LIMITS.maxGuidance) {
    throw invalid(`spec.guidance_scale: ${g} is outside [0, ${SPEC_LIMITS.maxGuidance}]`);
  }
  let sampler: SamplerKind;
  if (spec.sampler === Sampler.UNSPECIFIED || spec.sampler === Sampler.DDIM) sampler = "ddim";
  else if (spec.sampler === Sampler.DDPM) sampler = "ddpm";
  else throw invalid(`spec.sampler: unknown sampler ${spec.sampler}`);
  if (!Number.isFinite(spec.eta) || spec.eta < 0 || spec.eta > 1)
    throw invalid(`spec.eta: ${spec.eta} is outside [0, 1]`);
  return {
    steps: spec.steps === 0 ? SPEC_LIMITS.defaultSteps : spec.steps,
    guidanceScale: g,
    sampler,
    eta: spec.eta,
  };
}

/** PNG (also when unspecified) or TENSOR. */
function parseFormat(outputFormat: ImageFormat): ImageFormat {
  if (outputFormat === ImageFormat.UNSPECIFIED || outputFormat === ImageFormat.PNG) return ImageFormat.PNG;
  if (outputFormat === ImageFormat.TENSOR) return ImageFormat.TENSOR;
  throw invalid(`spec.output_format: unknown image format ${outputFormat}`);
}
