import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cloneModel, createModel, type DiffusionModel, improverFromPolicy, paramShapes } from "./model.js";
import { preset } from "./presets.js";
import { Rng } from "./rng.js";
import { maxAbsDiff, microConfig, randomizeWeights, setupTestBackend } from "./test-fixtures.js";

beforeAll(setupTestBackend);

const PROMPTS = ["a small red circle on a black background", "", "a large blue square on a white background"];

function noisy(n: number, S: number, seed: number): tf.Tensor4D {
  return tf.tensor4d(new Rng(seed).normals(n * S * S * 3), [n, S, S, 3]);
}

describe("presets", () => {
  it("have the documented sizes", () => {
    const count = (name: "tiny" | "shapes16" | "shapes32") => {
      let n = 0;
      for (const s of paramShapes(preset(name)).values()) n += s.reduce((a, b) => a * b, 1);
      return n;
    };
    expect(count("tiny")).toBe(47323);
    expect(count("shapes16")).toBe(741979);
    expect(count("shapes32")).toBe(973771);
  });
});

describe("DiffusionModel", () => {
  let policy: DiffusionModel;
  beforeAll(() => {
    policy = createModel(microConfig(), 3);
  });
  afterAll(() => policy.dispose());

  it("fixes every weight by its seed", () => {
    const again = createModel(microConfig(), 3);
    const other = createModel(microConfig(), 4);
    for (const [k, v] of policy.params) {
      expect(maxAbsDiff(v.dataSync(), again.params.get(k)!.dataSync())).toBe(0);
    }
    const w = "unet.conv_in.w";
    expect(maxAbsDiff(policy.params.get(w)!.dataSync(), other.params.get(w)!.dataSync())).toBeGreaterThan(0);
    again.dispose();
    other.dispose();
  });

  it("predicts ε = 0 at initialisation (zero-initialised output conv)", () => {
    const eps = tf.tidy(() => policy.predictEps(noisy(3, 8, 1), [10, 500, 999], PROMPTS).dataSync());
    expect(maxAbsDiff(eps, new Float32Array(eps.length))).toBe(0);
  });

  it("conditions on the prompt and the timestep, and gives finite output for the null prompt", () => {
    const m = cloneModel(policy);
    randomizeWeights(m, 11);
    const x = noisy(1, 8, 2);
    const run = (t: number, p: string) => tf.tidy(() => m.predictEps(x, t, [p]).dataSync());
    const a = run(500, PROMPTS[0]);
    expect(maxAbsDiff(a, run(500, PROMPTS[2]))).toBeGreaterThan(1e-3);
    expect(maxAbsDiff(a, run(100, PROMPTS[0]))).toBeGreaterThan(1e-3);
    expect(run(500, "").every(Number.isFinite)).toBe(true);
    x.dispose();
    m.dispose();
  });

  it("treats each image independently of the rest of the batch", () => {
    const m = cloneModel(policy);
    randomizeWeights(m, 12);
    const x = noisy(3, 8, 3);
    const t = [5, 400, 900];
    const batch = tf.tidy(() => m.predictEps(x, t, PROMPTS).dataSync());
    const per = 8 * 8 * 3;
    for (let i = 0; i < 3; i++) {
      const alone = tf.tidy(() => m.predictEps(tf.slice(x, [i], [1]), [t[i]], [PROMPTS[i]]).dataSync());
      expect(maxAbsDiff(alone, batch.slice(i * per, (i + 1) * per))).toBeLessThan(1e-5);
    }
    x.dispose();
    m.dispose();
  });

  it("validates inputs with messages that name the problem", () => {
    const x = noisy(2, 8, 4);
    expect(() => policy.predictEps(noisy(1, 16, 1), 1, [""])).toThrow(/expected \[n, 8, 8, 3\]/);
    expect(() => policy.predictEps(x, [1], ["", ""])).toThrow(/1 timesteps for a batch of 2/);
    expect(() => policy.predictEps(x, 1000, ["", ""])).toThrow(/not an integer in \[0, 1000\)/);
    expect(() => policy.predictEps(x, 1, [""])).toThrow(/1 prompts for a batch of 2/);
    expect(() => policy.predictEps(x, 1, ["", ""], x)).toThrow(/policy model takes no condition image/);
    x.dispose();
  });
});

describe("improverFromPolicy", () => {
  it("copies the policy and zero-initialises the condition channels: ε equals the policy's for any condition image", () => {
    const policy = createModel(microConfig(), 5);
    randomizeWeights(policy, 21);
    const improver = improverFromPolicy(policy);
    expect(improver.kind).toBe("improver");
    expect(improver.config.unet.condChannels).toBe(3);
    expect(improver.params.get("unet.conv_in.w")!.shape).toEqual([3, 3, 6, 8]);
    const x = noisy(3, 8, 6);
    const t = [1, 300, 999];
    const ref = tf.tidy(() => policy.predictEps(x, t, PROMPTS).dataSync());
    for (const seed of [7, 8]) {
      const cond = noisy(3, 8, seed);
      const eps = tf.tidy(() => improver.predictEps(x, t, PROMPTS, cond).dataSync());
      expect(maxAbsDiff(eps, ref)).toBeLessThan(1e-6);
      cond.dispose();
    }
    const zeros = tf.zeros([3, 8, 8, 3]) as tf.Tensor4D;
    expect(
      maxAbsDiff(
        tf.tidy(() => improver.predictEps(x, t, PROMPTS, zeros).dataSync()),
        ref,
      ),
    ).toBeLessThan(1e-6);
    expect(() => improver.predictEps(x, t, PROMPTS)).toThrow(/needs a condition image/);
    expect(() => improverFromPolicy(improver)).toThrow(/already an improver/);
    tf.dispose([x, zeros]);
    policy.dispose();
    improver.dispose();
  });
});
