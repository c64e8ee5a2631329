import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { classifierFreeGuidance, doubleGuidance } from "./guidance.js";
import { createModel, DiffusionModel, improverFromPolicy } from "./model.js";
import { Rng } from "./rng.js";
import { improve, sample, samplerStep, samplingTimesteps, stepSigma } from "./samplers.js";
import {
  maxAbsDiff,
  microConfig,
  randomImages,
  randomizeWeights,
  setupTestBackend,
} from "./test-fixtures.js";

beforeAll(setupTestBackend);

const P = ["a small red circle on a black background", "a large blue square on a white background", ""];
const S = 8;
const PER = S * S * 3;

/**
 * DDIM (η = 0) written out from Song et al. with x̂₀ clipped and ε̂ recomputed from it, independent of
 * samplerStep; counts in `clips` how many x̂₀ values the clip changed, so a test can show it was active.
 */
function referenceDdimStep(
  x: tf.Tensor4D,
  eps: tf.Tensor,
  ab: number,
  abPrev: number,
  clips: { n: number },
): tf.Tensor4D {
  const xs = x.dataSync();
  const es = eps.dataSync();
  const out = new Float32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    const raw = (xs[i] - Math.sqrt(1 - ab) * es[i]) / Math.sqrt(ab);
    const x0 = Math.min(1, Math.max(-1, raw));
    if (x0 !== raw) clips.n++;
    const e = (xs[i] - Math.sqrt(ab) * x0) / Math.sqrt(1 - ab);
    out[i] = Math.sqrt(abPrev) * x0 + Math.sqrt(1 - abPrev) * e;
  }
  return tf.tensor4d(out, x.shape);
}

describe("samplingTimesteps", () => {
  it("spaces steps evenly, starting at T − 1", () => {
    expect(samplingTimesteps(1000, 4)).toEqual([999, 749, 499, 249]);
    expect(samplingTimesteps(1000, 1)).toEqual([999]);
    expect(samplingTimesteps(5, 5)).toEqual([4, 3, 2, 1, 0]);
    expect(() => samplingTimesteps(1000, 0)).toThrow(/steps/);
  });
});

describe("samplerStep", () => {
  let model: DiffusionModel;
  let ab: Float64Array;
  let x0: number;
  beforeAll(() => {
    model = createModel(microConfig(), 1);
    ab = model.schedule.alphasCumprod;
    x0 = (0.3 - Math.sqrt(1 - ab[600]) * -0.2) / Math.sqrt(ab[600]);
  });
  afterAll(() => model.dispose());
  const run = (kind: "ddim" | "ddpm", eta: number, noise?: number, clipDenoised = false) =>
    tf.tidy(
      () =>
        samplerStep(
          model.schedule,
          kind,
          tf.tensor4d([0.3], [1, 1, 1, 1]),
          tf.tensor4d([-0.2], [1, 1, 1, 1]),
          600,
          400,
          {
            eta,
            clipDenoised,
            noise: noise === undefined ? undefined : tf.tensor4d([noise], [1, 1, 1, 1]),
          },
        ).dataSync()[0],
    );

  it("DDIM (η = 0) follows Song et al.'s update", () => {
    const want = Math.sqrt(ab[400]) * x0 + Math.sqrt(1 - ab[400]) * -0.2;
    expect(Math.abs(run("ddim", 0) - want)).toBeLessThan(1e-5);
  });

  it("recomputes ε̂ from the clipped x̂₀ when x̂₀ leaves [−1, 1] (DDIM at η = 0 and η > 0, DDPM)", () => {
    // x = 0.3, ε̂ = −0.2 at t = 600 puts x̂₀ far above 1; the step must use x̂₀ = 1 and the ε̂ it implies.
    expect(x0).toBeGreaterThan(1.5);
    const clipped = (kind: "ddim" | "ddpm", eta: number, noise?: number) => run(kind, eta, noise, true);
    const epsClipped = (0.3 - Math.sqrt(ab[600]) * 1) / Math.sqrt(1 - ab[600]);
    const ddim0 = Math.sqrt(ab[400]) * 1 + Math.sqrt(1 - ab[400]) * epsClipped;
    expect(Math.abs(clipped("ddim", 0) - ddim0)).toBeLessThan(1e-5);
    // The unclipped ε̂ would land elsewhere: the defect this guards against.
    expect(Math.abs(ddim0 - (Math.sqrt(ab[400]) + Math.sqrt(1 - ab[400]) * -0.2))).toBeGreaterThan(0.05);
    const post = ((1 - ab[400]) / (1 - ab[600])) * (1 - ab[600] / ab[400]);
    const sigma = 0.5 * Math.sqrt(post);
    const ddimEta =
      Math.sqrt(ab[400]) * 1 + Math.sqrt(1 - ab[400] - sigma * sigma) * epsClipped + sigma * 0.7;
    expect(Math.abs(clipped("ddim", 0.5, 0.7) - ddimEta)).toBeLessThan(1e-5);
    const a = ab[600] / ab[400];
    const mean =
      ((Math.sqrt(ab[400]) * (1 - a)) / (1 - ab[600])) * 1 +
      ((Math.sqrt(a) * (1 - ab[400])) / (1 - ab[600])) * 0.3;
    expect(Math.abs(clipped("ddpm", 0, 0.7) - (mean + Math.sqrt(post) * 0.7))).toBeLessThan(1e-5);
  });

  it("DDIM with η and DDPM use the posterior variance", () => {
    const post = ((1 - ab[400]) / (1 - ab[600])) * (1 - ab[600] / ab[400]);
    const sigma = 0.5 * Math.sqrt(post);
    expect(stepSigma("ddim", ab[600], ab[400], 0.5)).toBeCloseTo(sigma, 12);
    expect(stepSigma("ddpm", ab[600], ab[400], 0)).toBeCloseTo(Math.sqrt(post), 12);
    const ddim = Math.sqrt(ab[400]) * x0 + Math.sqrt(1 - ab[400] - sigma * sigma) * -0.2 + sigma * 0.7;
    expect(Math.abs(run("ddim", 0.5, 0.7) - ddim)).toBeLessThan(1e-5);
    const a = ab[600] / ab[400];
    const mean =
      ((Math.sqrt(ab[400]) * (1 - a)) / (1 - ab[600])) * x0 +
      ((Math.sqrt(a) * (1 - ab[400])) / (1 - ab[600])) * 0.3;
    expect(Math.abs(run("ddpm", 0, 0.7) - (mean + Math.sqrt(post) * 0.7))).toBeLessThan(1e-5);
    expect(() => run("ddpm", 0)).toThrow(/no noise/);
  });
});

describe("samplers with the exact ε of a point-mass data distribution", () => {
  it("recover the point (DDIM η = 0, DDIM η = 1, DDPM)", async () => {
    const base = createModel(microConfig(), 1);
    const point = [0.9, 0.1, 0.4];
    // For data x₀ = point, ε(x_t, t) = (x_t − √ᾱ_t x₀)/√(1 − ᾱ_t) exactly.
    class Oracle extends DiffusionModel {
      override predictEps(xt: tf.Tensor4D, t: number | ArrayLike<number>): tf.Tensor4D {
        const ab = this.schedule.alphasCumprod[typeof t === "number" ? t : t[0]];
        return tf.tidy(() =>
          tf.div(
            tf.sub(xt, tf.mul(tf.tensor1d(point.map((v) => 2 * v - 1)), Math.sqrt(ab))),
            Math.sqrt(1 - ab),
          ),
        );
      }
    }
    const oracle = new Oracle(base.config, base.params);
    for (const opts of [
      { sampler: "ddim" as const },
      { sampler: "ddim" as const, eta: 1 },
      { sampler: "ddpm" as const },
    ]) {
      const out = await sample(oracle, {
        prompts: ["", ""],
        seeds: [3, 4],
        steps: 10,
        guidanceScale: 1,
        ...opts,
      });
      const want = Float32Array.from({ length: out.data.length }, (_, i) => point[i % 3]);
      expect(maxAbsDiff(out.data, want)).toBeLessThan(1e-5);
    }
    base.dispose();
  });
});

describe("guidance formulas", () => {
  it("classifier-free and double guidance combine the branches as written", () => {
    const t = (v: number) => tf.tensor4d([v], [1, 1, 1, 1]);
    const cfg = tf.tidy(() => classifierFreeGuidance(t(2), t(0.5), 3).dataSync()[0]);
    expect(cfg).toBeCloseTo(0.5 + 3 * 1.5, 6);
    const dg = tf.tidy(() => doubleGuidance(t(2), t(1), t(0.25), 3.5, 3).dataSync()[0]);
    expect(dg).toBeCloseTo(0.25 + 3 * (1 - 0.25) + 3.5 * (2 - 1), 6);
  });
});

describe("sample", () => {
  let policy: DiffusionModel;
  beforeAll(() => {
    policy = createModel(microConfig(), 2);
    randomizeWeights(policy, 31, 0.15);
  });
  afterAll(() => policy.dispose());

  it("returns [0, 1] images fixed by the seeds, independent of batch composition and chunking", async () => {
    const a = await sample(policy, { prompts: P, seeds: [1, 2, 3], steps: 3 });
    expect(a.n).toBe(3);
    expect(a.height).toBe(S);
    expect(a.data.every((v) => v >= 0 && v <= 1)).toBe(true);
    const b = await sample(policy, { prompts: P, seeds: [1, 2, 3], steps: 3, batchSize: 2 });
    expect(maxAbsDiff(a.data, b.data)).toBeLessThan(1e-5);
    const alone = await sample(policy, { prompts: [P[1]], seeds: [2], steps: 3 });
    expect(maxAbsDiff(alone.data, a.data.slice(PER, 2 * PER))).toBeLessThan(1e-5);
    const other = await sample(policy, { prompts: [P[1]], seeds: [9], steps: 3 });
    expect(maxAbsDiff(other.data, alone.data)).toBeGreaterThan(1e-3);
  });

  it.each([
    ["plain (guidance 1)", 1],
    ["classifier-free guidance", 2.5],
  ])("matches an independent DDIM loop with x̂₀ clipping active: %s", async (_name, g) => {
    const steps = 3;
    const seeds = [4, 5];
    const prompts = P.slice(0, 2);
    const got = await sample(policy, { prompts, seeds, steps, guidanceScale: g, sampler: "ddim", eta: 0 });
    // Independent loop: separate forward passes per branch, guidance and the step written out.
    const rngs = seeds.map((s) => new Rng(s));
    const init = new Float32Array(2 * PER);
    rngs.forEach((r, i) => {
      r.normals(PER, init, i * PER);
    });
    let x = tf.tensor4d(init, [2, S, S, 3]);
    const ts = samplingTimesteps(1000, steps);
    const ab = policy.schedule.alphasCumprod;
    const clips = { n: 0 };
    for (let i = 0; i < steps; i++) {
      const t = ts[i];
      const abPrev = i + 1 < steps ? ab[ts[i + 1]] : 1;
      const next = tf.tidy(() => {
        const c = policy.predictEps(x, t, prompts);
        const u = policy.predictEps(x, t, ["", ""]);
        const eps = g === 1 ? c : tf.add(u, tf.mul(tf.sub(c, u), g));
        return referenceDdimStep(x, eps, ab[t], abPrev, clips);
      });
      x.dispose();
      x = next as tf.Tensor4D;
    }
    const want = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1).dataSync());
    x.dispose();
    expect(clips.n).toBeGreaterThan(0);
    expect(maxAbsDiff(got.data, want)).toBeLessThan(1e-5);
  });

  it("releases every tensor it creates", async () => {
    await sample(policy, { prompts: P, seeds: [1, 2, 3], steps: 2 });
    const before = tf.memory().numTensors;
    await sample(policy, { prompts: P, seeds: [1, 2, 3], steps: 2, sampler: "ddpm", batchSize: 2 });
    expect(tf.memory().numTensors).toBe(before);
  });

  it("runs DDPM and stochastic DDIM reproducibly", async () => {
    for (const opts of [{ sampler: "ddpm" as const }, { sampler: "ddim" as const, eta: 1 }]) {
      const a = await sample(policy, { prompts: P, seeds: [1, 2, 3], steps: 3, ...opts });
      const b = await sample(policy, { prompts: [P[2]], seeds: [3], steps: 3, ...opts });
      expect(maxAbsDiff(a.data.slice(2 * PER), b.data)).toBeLessThan(1e-5);
      expect(a.data.every(Number.isFinite)).toBe(true);
    }
  });

  it("validates its arguments", async () => {
    await expect(sample(policy, { prompts: P, seeds: [1] })).rejects.toThrow(/3 prompts and 1 seeds/);
    await expect(sample(policy, { prompts: ["x"], seeds: [-1] })).rejects.toThrow(/seeds\[0\]/);
    await expect(sample(policy, { prompts: ["x"], seeds: [1], steps: 0 })).rejects.toThrow(/steps/);
    await expect(sample(policy, { prompts: ["x"], seeds: [1], eta: 2 })).rejects.toThrow(/eta/);
    const ac = new AbortController();
    ac.abort(new Error("stopped by test"));
    await expect(sample(policy, { prompts: ["x"], seeds: [1], signal: ac.signal })).rejects.toThrow(
      /stopped by test/,
    );
    expect(tf.memory().numTensors).toBeLessThan(2000);
  });
});

describe("improve", () => {
  let improver: DiffusionModel;
  beforeAll(() => {
    const policy = createModel(microConfig(), 2);
    improver = improverFromPolicy(policy);
    policy.dispose();
    randomizeWeights(improver, 41, 0.15);
  });
  afterAll(() => improver.dispose());

  it.each([
    ["from noise (strength 1)", 1],
    ["SDEdit (strength 0.5)", 0.5],
  ])(
    "applies Eq. 9 with its three branches in one batch, per-image seeded, x̂₀ clipped: %s",
    async (_n, strength) => {
      const images = randomImages(2, S, 5);
      const prompts = P.slice(0, 2);
      const seeds = [6, 7];
      const [sT, sI] = [3.5, 3];
      const steps = 4;
      const got = await improve(improver, { images, prompts, seeds, steps, strength });
      const rngs = seeds.map((s) => new Rng(s));
      const init = new Float32Array(2 * PER);
      rngs.forEach((r, i) => {
        r.normals(PER, init, i * PER);
      });
      const cond = tf.tidy(() => tf.sub(tf.mul(tf.tensor4d(images.data, [2, S, S, 3]), 2), 1)) as tf.Tensor4D;
      const zero = tf.zerosLike(cond);
      const ab = improver.schedule.alphasCumprod;
      // SDEdit: keep the last round(steps·strength) timesteps and start from the input noised to the first.
      const ts = samplingTimesteps(1000, steps).slice(steps - Math.round(steps * strength));
      const z = tf.tensor4d(init, [2, S, S, 3]);
      let x =
        strength < 1
          ? (tf.tidy(() =>
              tf.add(tf.mul(cond, Math.sqrt(ab[ts[0]])), tf.mul(z, Math.sqrt(1 - ab[ts[0]]))),
            ) as tf.Tensor4D)
          : z.clone();
      z.dispose();
      const clips = { n: 0 };
      for (let i = 0; i < ts.length; i++) {
        const t = ts[i];
        const abPrev = i + 1 < ts.length ? ab[ts[i + 1]] : 1;
        const next = tf.tidy(() => {
          const eIT = improver.predictEps(x, t, prompts, cond);
          const eI = improver.predictEps(x, t, ["", ""], cond);
          const eN = improver.predictEps(x, t, ["", ""], zero);
          const eps = tf.add(tf.add(eN, tf.mul(tf.sub(eI, eN), sI)), tf.mul(tf.sub(eIT, eI), sT));
          return referenceDdimStep(x, eps, ab[t], abPrev, clips);
        });
        x.dispose();
        x = next as tf.Tensor4D;
      }
      const want = tf.tidy(() => tf.clipByValue(tf.add(tf.mul(x, 0.5), 0.5), 0, 1).dataSync());
      tf.dispose([x, cond, zero]);
      expect(clips.n).toBeGreaterThan(0);
      expect(maxAbsDiff(got.data, want)).toBeLessThan(1e-5);
      const second = await improve(improver, {
        images: { ...images, n: 1, data: images.data.slice(PER) },
        prompts: [prompts[1]],
        seeds: [7],
        steps,
        strength,
      });
      expect(maxAbsDiff(second.data, got.data.slice(PER))).toBeLessThan(1e-5);
    },
  );

  it("supports partial strength (SDEdit start), releases its tensors and validates inputs", async () => {
    const images = randomImages(1, S, 8);
    const before = tf.memory().numTensors;
    await improve(improver, { images, prompts: [P[0]], seeds: [1], steps: 2, eta: 1 });
    expect(tf.memory().numTensors).toBe(before);
    const out = await improve(improver, { images, prompts: [P[0]], seeds: [1], steps: 4, strength: 0.5 });
    expect(out.n).toBe(1);
    expect(out.data.every((v) => v >= 0 && v <= 1)).toBe(true);
    await expect(
      improve(improver, { images: randomImages(1, 16, 1), prompts: [""], seeds: [1] }),
    ).rejects.toThrow(/16x16, the model works on 8x8/);
    await expect(improve(improver, { images, prompts: ["", ""], seeds: [1, 2] })).rejects.toThrow(
      /1 images and 2 prompts/,
    );
    await expect(improve(improver, { images, prompts: [""], seeds: [1], strength: 0 })).rejects.toThrow(
      /strength/,
    );
    await expect(sample(improver, { prompts: [""], seeds: [1] })).rejects.toThrow(/use improve/);
  });
});
