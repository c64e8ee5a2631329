import {
  createModel,
  type DiffusionConfig,
  type DiffusionModel,
  improve,
  improverFromPolicy,
  preset,
  Rng,
  sample,
} from "@idpo/diffusion";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrtDiffusionModel } from "./ort-model.js";
import { ortImprove, ortSample } from "./ort-sampler.js";
import { hostWeights, perturbWeights, useTestBackend } from "./test-models.js";

/**
 * Stated tolerance of the ONNX sampler against the tfjs one, on [0, 1] pixels after a whole trajectory:
 * the two UNets agree to ~1e-6 relative per call (onnx-equivalence.test.ts) and the step arithmetic is
 * the same float32 sequence, so 20 guided steps stay well inside 1e-3.
 */
const PIXEL_TOL = 1e-3;

function maxAbs(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function spread(a: Float32Array): number {
  let lo = 1;
  let hi = 0;
  for (const v of a) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  return hi - lo;
}

function testConfig(): DiffusionConfig {
  const cfg = preset("tiny");
  cfg.unet.midAttention = true;
  return cfg;
}

const PROMPTS = ["a small red circle on a white background", "", "a large blue square on a black background"];
const SEEDS = [7, 8, 2 ** 40 + 3];

describe("ONNX Runtime sampler vs the tfjs sampler", () => {
  let policy: DiffusionModel;
  let improver: DiffusionModel;
  let ortPolicy: OrtDiffusionModel;
  let ortImprover: OrtDiffusionModel;
  beforeAll(async () => {
    await useTestBackend();
    policy = createModel(testConfig(), 3);
    perturbWeights(policy, 4, 0.1);
    improver = improverFromPolicy(policy);
    perturbWeights(improver, 5, 0.1);
    const opts = { threads: 1, provider: "cpu" as const };
    ortPolicy = await OrtDiffusionModel.fromWeights(policy.config, hostWeights(policy), opts);
    ortImprover = await OrtDiffusionModel.fromWeights(improver.config, hostWeights(improver), opts);
  });
  afterAll(async () => {
    policy.dispose();
    improver.dispose();
    await ortPolicy.release();
    await ortImprover.release();
  });

  it("seeded DDIM-20 with classifier-free guidance matches image for image", async () => {
    const opts = { prompts: PROMPTS, seeds: SEEDS, steps: 20, guidanceScale: 3 };
    const ref = await sample(policy, opts);
    const got = await ortSample(ortPolicy, opts);
    expect(spread(ref.data)).toBeGreaterThan(0.2);
    expect(maxAbs(got.data, ref.data)).toBeLessThan(PIXEL_TOL);
    // Per-image seeds: the second image alone is the same image.
    const alone = await ortSample(ortPolicy, { ...opts, prompts: [PROMPTS[1]], seeds: [SEEDS[1]] });
    const per = alone.data.length;
    expect(maxAbs(alone.data, got.data.subarray(per, 2 * per))).toBe(0);
  }, 60_000);

  it("DDPM and DDIM with η > 0 (per-image noise every step) match", async () => {
    for (const extra of [
      { sampler: "ddpm" as const },
      { sampler: "ddim" as const, eta: 0.7, guidanceScale: 1 },
    ]) {
      const opts = { prompts: PROMPTS, seeds: SEEDS, steps: 8, ...extra };
      const ref = await sample(policy, opts);
      const got = await ortSample(ortPolicy, opts);
      expect(maxAbs(got.data, ref.data)).toBeLessThan(PIXEL_TOL);
    }
  }, 60_000);

  it("double-guidance improvement, from noise and SDEdit at strength 0.6, matches", async () => {
    const S = improver.imageSize;
    const images = { n: 3, height: S, width: S, channels: 3 as const, data: new Float32Array(3 * S * S * 3) };
    const rng = new Rng(9);
    for (let i = 0; i < images.data.length; i++) images.data[i] = rng.next();
    for (const strength of [1, 0.6]) {
      const opts = { images, prompts: PROMPTS, seeds: SEEDS, steps: 20, sT: 3.5, sI: 3, strength };
      const ref = await improve(improver, opts);
      const got = await ortImprove(ortImprover, opts);
      expect(spread(ref.data)).toBeGreaterThan(0.2);
      expect(maxAbs(got.data, ref.data)).toBeLessThan(PIXEL_TOL);
    }
  }, 60_000);

  it("refuses what the tfjs sampler refuses, with the same messages", async () => {
    await expect(ortSample(ortPolicy, { prompts: ["a"], seeds: [] })).rejects.toThrow(/one seed per image/);
    await expect(ortSample(ortPolicy, { prompts: ["a"], seeds: [1], steps: 0 })).rejects.toThrow(
      /steps must be/,
    );
    await expect(ortSample(ortImprover, { prompts: ["a"], seeds: [1] })).rejects.toThrow(
      /expects a text-to-image/,
    );
    await expect(
      ortImprove(ortImprover, {
        images: { n: 1, height: 16, width: 16, channels: 3, data: new Float32Array(768) },
        prompts: ["a"],
        seeds: [1],
        strength: 0,
      }),
    ).rejects.toThrow(/strength must be in/);
  });
});
