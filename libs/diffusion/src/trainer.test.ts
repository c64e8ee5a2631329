import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { AdamW } from "./adamw.js";
import { Ema } from "./ema.js";
import { clipByGlobalNorm } from "./grad-clip.js";
import { learningRateAt } from "./lr-schedule.js";
import { cloneModel, createModel, improverFromPolicy } from "./model.js";
import { dpoObjective, improverObjective, pretrainObjective, spinObjective } from "./objectives.js";
import type { Params } from "./params.js";
import { nanoConfig, randomImages, randomizeWeights, setupTestBackend } from "./test-fixtures.js";
import { Trainer } from "./trainer.js";

beforeAll(setupTestBackend);

function scalarParams(values: Record<string, number>): Params {
  const p: Params = new Map();
  for (const [k, v] of Object.entries(values)) p.set(k, tf.variable(tf.scalar(v)));
  return p;
}

describe("AdamW", () => {
  it("matches PyTorch's update step by step", () => {
    const params = scalarParams({ w: 1 });
    const opt = new AdamW(params, { weightDecay: 0.01 });
    const [lr, b1, b2, eps, wd] = [0.1, 0.9, 0.999, 1e-8, 0.01];
    let p = 1;
    let m = 0;
    let v = 0;
    const gs = [0.5, -1, 0.25];
    for (let k = 1; k <= gs.length; k++) {
      const g = gs[k - 1];
      const gt = tf.scalar(g);
      opt.apply(new Map([["w", gt]]), lr);
      gt.dispose();
      p -= lr * wd * p;
      m = b1 * m + (1 - b1) * g;
      v = b2 * v + (1 - b2) * g * g;
      p -= (lr * (m / (1 - b1 ** k))) / (Math.sqrt(v / (1 - b2 ** k)) + eps);
      expect(params.get("w")!.dataSync()[0]).toBeCloseTo(p, 6);
    }
    expect(opt.iterations).toBe(3);
    const state = opt.state();
    expect(state.m.dataSync()[0]).toBeCloseTo(m, 6);
    const fresh = new AdamW(params, { weightDecay: 0.01 });
    fresh.loadState(state.iterations, state.m, state.v);
    expect(fresh.state().v.dataSync()[0]).toBeCloseTo(v, 9);
    expect(fresh.iterations).toBe(3);
    expect(() => opt.apply(new Map([["nope", tf.scalar(1)]]), lr)).toThrow(/unknown parameter nope/);
    opt.dispose();
    fresh.dispose();
  });
});

describe("clipByGlobalNorm", () => {
  it("scales by maxNorm / (norm + 1e-6) only when the norm exceeds maxNorm", () => {
    const grads = new Map<string, tf.Tensor>([
      ["a", tf.tensor1d([3])],
      ["b", tf.tensor1d([4])],
    ]);
    const c = clipByGlobalNorm(grads, 1);
    expect(c.norm).toBeCloseTo(5, 6);
    expect(c.grads.get("a")!.dataSync()[0]).toBeCloseTo(3 / (5 + 1e-6), 6);
    const none = clipByGlobalNorm(grads, 10);
    expect(none.scaled).toBe(false);
    expect(none.grads.get("b")).toBe(grads.get("b"));
    tf.dispose([...grads.values(), ...c.grads.values()]);
  });
});

describe("learningRateAt", () => {
  it("warms up linearly, then stays constant or follows a cosine", () => {
    const cfg = { lr: 1e-3, warmupSteps: 4 };
    expect([0, 1, 3, 4, 100].map((s) => learningRateAt(cfg, s))).toEqual([2.5e-4, 5e-4, 1e-3, 1e-3, 1e-3]);
    const cos = { lr: 1, warmupSteps: 2, kind: "cosine" as const, totalSteps: 12, minLr: 0.1 };
    expect(learningRateAt(cos, 2)).toBeCloseTo(1, 12);
    expect(learningRateAt(cos, 7)).toBeCloseTo(0.55, 12);
    expect(learningRateAt(cos, 12)).toBeCloseTo(0.1, 12);
    expect(learningRateAt(cos, 50)).toBeCloseTo(0.1, 12);
    expect(() => learningRateAt({ lr: 1, kind: "cosine" }, 0)).toThrow(/totalSteps/);
  });
});

describe("Ema", () => {
  it("averages with decay min(d, (1 + k)/(10 + k))", () => {
    const params = scalarParams({ w: 0 });
    const ema = new Ema(params, 0.5);
    params.get("w")!.assign(tf.scalar(10));
    ema.update(); // d = min(0.5, 1/10) = 0.1: 0.1·0 + 0.9·10
    const avg = () => {
      const a = ema.averages();
      const v = a.get("w")!.dataSync()[0];
      tf.dispose([...a.values()]);
      return v;
    };
    expect(avg()).toBeCloseTo(9, 5);
    params.get("w")!.assign(tf.scalar(0));
    ema.update(); // d = min(0.5, 2/11)
    expect(avg()).toBeCloseTo((2 / 11) * 9, 5);
    const target = scalarParams({ w: -1 });
    ema.copyTo(target);
    expect(target.get("w")!.dataSync()[0]).toBeCloseTo((2 / 11) * 9, 5);
    const resumed = new Ema(target, 0.5);
    resumed.loadState(ema.state().count, ema.state().average);
    expect(resumed.currentDecay()).toBeCloseTo(ema.currentDecay(), 12);
    ema.dispose();
    resumed.dispose();
  });
});

describe("Trainer", () => {
  it("averages microbatch gradients (accumulation) before clipping and AdamW", () => {
    const params = scalarParams({ w: 2 });
    const w = params.get("w")!;
    // Loss (w − target)²: gradient 2(w − target). Two microbatches with targets 0 and 1.
    const trainer = new Trainer<number>(
      params,
      (target) => {
        const loss = tf.square(tf.sub(w, target)) as tf.Scalar;
        return { loss, metrics: { loss } };
      },
      { schedule: { lr: 0.1 }, adam: { weightDecay: 0 }, maxGradNorm: 0, seed: 1 },
    );
    const r = trainer.step([0, 1]);
    expect(r.gradNorm).toBeCloseTo((2 * 2 + 2 * 1) / 2, 5);
    expect(r.metrics.loss).toBeCloseTo((4 + 1) / 2, 5);
    // First Adam step moves by lr·sign(g) (bias-corrected m/√v = ±1).
    expect(w.dataSync()[0]).toBeCloseTo(2 - 0.1, 5);
    expect(r.step).toBe(1);
    trainer.dispose();
  });

  it("stops loudly on a non-finite gradient", () => {
    const params = scalarParams({ w: 1 });
    const w = params.get("w")!;
    const trainer = new Trainer<number>(
      params,
      () => {
        const loss = tf.mul(w, Number.NaN) as tf.Scalar;
        return { loss, metrics: { loss } };
      },
      { schedule: { lr: 0.1 }, seed: 1 },
    );
    expect(() => trainer.step([0])).toThrow(/gradient norm is NaN/);
    expect(w.dataSync()[0]).toBe(1);
    trainer.dispose();
  });

  it("leaks no tensors: the count after step 100 equals the count after step 10", () => {
    const model = createModel(nanoConfig(), 1);
    randomizeWeights(model, 2, 0.15);
    const batch = { prompts: ["a red circle"], images: randomImages(1, 4, 3) };
    const trainer = new Trainer(model.params, pretrainObjective(model, 0.5), {
      schedule: { lr: 1e-3, warmupSteps: 5, kind: "cosine", totalSteps: 100 },
      emaDecay: 0.99,
      seed: 5,
    });
    let after10 = -1;
    for (let s = 1; s <= 100; s++) {
      // Gradient accumulation on a few steps before and after step 10.
      const r = trainer.step(s === 5 || s === 60 ? [batch, batch] : [batch]);
      expect(Number.isFinite(r.metrics.loss)).toBe(true);
      if (s === 10) after10 = tf.memory().numTensors;
    }
    expect(trainer.stepCount).toBe(100);
    expect(tf.memory().numTensors).toBe(after10);
    trainer.dispose();
    model.dispose();
    // 100 real optimiser steps: generous on a loaded 2-core machine.
  }, 240_000);

  it("leaves no tensor behind after dispose (optimiser state, EMA, steps taken)", () => {
    const model = createModel(nanoConfig(), 1);
    const batch = { prompts: ["a red circle"], images: randomImages(1, 4, 3) };
    const before = tf.memory().numTensors;
    const trainer = new Trainer(model.params, pretrainObjective(model, 0.5), {
      schedule: { lr: 1e-3 },
      emaDecay: 0.99,
      seed: 5,
    });
    trainer.step([batch, batch]);
    trainer.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const bare = new Trainer(model.params, pretrainObjective(model, 0.5), {
      schedule: { lr: 1e-3 },
      seed: 6,
    });
    bare.dispose();
    expect(tf.memory().numTensors).toBe(before);
    model.dispose();
  });

  it("leaves the tensor count unchanged for every objective (DPO, SPIN, improver)", () => {
    const reference = createModel(nanoConfig(), 3, { trainable: false });
    randomizeWeights(reference, 4, 0.15);
    const policy = cloneModel(reference);
    const improver = improverFromPolicy(reference);
    const pairs = {
      prompts: ["a red circle", ""],
      winners: randomImages(2, 4, 5),
      losers: randomImages(2, 4, 6),
    };
    const runs: [Trainer<never>, unknown, string[]][] = [
      [
        new Trainer(policy.params, dpoObjective(policy, reference, { beta: 100 }), {
          schedule: { lr: 1e-3 },
          seed: 1,
        }) as Trainer<never>,
        pairs,
        ["implicit_acc", "loss", "model_diff", "raw_model_loss", "ref_diff", "ref_loss"],
      ],
      [
        new Trainer(policy.params, spinObjective(policy, reference, { beta: 100 }), {
          schedule: { lr: 1e-3 },
          seed: 2,
        }) as Trainer<never>,
        { prompts: pairs.prompts, real: pairs.winners, generated: pairs.losers },
        ["implicit_acc", "loss", "model_diff", "raw_model_loss", "ref_diff", "ref_loss"],
      ],
      [
        new Trainer(improver.params, improverObjective(improver), {
          schedule: { lr: 1e-3 },
          seed: 3,
        }) as Trainer<never>,
        pairs,
        ["loss"],
      ],
    ];
    for (const [trainer, batch, names] of runs) {
      trainer.step([batch as never]);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        const r = trainer.step([batch as never]);
        for (const n of names) expect(Number.isFinite(r.metrics[n])).toBe(true);
      }
      expect(tf.memory().numTensors).toBe(before);
      trainer.dispose();
    }
    tf.dispose([...policy.params.values(), ...reference.params.values(), ...improver.params.values()]);
  });
});
