import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dpoLoss, dpoLossFromPredictions } from "./dpo-loss.js";
import { epsMseFromPredictions, epsMseLoss } from "./eps-mse-loss.js";
import {
  DEFAULT_IMPROVER_TASKS,
  type ImproverSamplePlan,
  improverLoss,
  improverLossFromPredictions,
  planImproverBatch,
} from "./improver-loss.js";
import { disposeLossOutput, type LossOutput, tidyLoss } from "./loss-output.js";
import { cloneModel, createModel, type DiffusionModel, improverFromPolicy } from "./model.js";
import { addNoise, drawNoise, drawTimesteps } from "./noising.js";
import { Rng } from "./rng.js";
import { spinLoss } from "./spin-loss.js";
import { microConfig, randomImages, randomizeWeights, setupTestBackend } from "./test-fixtures.js";

beforeAll(setupTestBackend);

const S = 8;
const PER = S * S * 3;

function values(out: LossOutput): Record<string, number> {
  const r: Record<string, number> = {};
  for (const [k, v] of Object.entries(out.metrics)) r[k] = v.dataSync()[0];
  disposeLossOutput(out);
  return r;
}

/** Per-sample mean squared difference in float64. */
function mse(a: Float32Array, b: Float32Array, n: number): number[] {
  const per = a.length / n;
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < per; j++) s += (a[i * per + j] - b[i * per + j]) ** 2;
    out.push(s / per);
  }
  return out;
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

describe("Diffusion-DPO loss from fixed predictions", () => {
  it("equals the reference implementation's formula and metrics", () => {
    const n = 4;
    const rng = new Rng(1);
    const noise = rng.normals(n * PER);
    const near = (scale: number) => Float32Array.from(noise, (v) => v + scale * rng.normal());
    const pW = near(0.3);
    const pL = near(0.35);
    const rW = near(0.32);
    const rL = near(0.3);
    // Pair 3 is a tie: the policy predicts exactly what the reference does.
    pW.set(rW.subarray(3 * PER), 3 * PER);
    pL.set(rL.subarray(3 * PER), 3 * PER);
    const beta = 50;
    const shape: [number, number, number, number] = [n, S, S, 3];
    const got = values(
      tidyLoss(() =>
        dpoLossFromPredictions(
          {
            noise: tf.tensor4d(noise, shape),
            policyW: tf.tensor4d(pW, shape),
            policyL: tf.tensor4d(pL, shape),
            refW: tf.tensor4d(rW, shape),
            refL: tf.tensor4d(rL, shape),
          },
          { beta },
        ),
      ),
    );
    const mw = mse(pW, noise, n);
    const ml = mse(pL, noise, n);
    const rw = mse(rW, noise, n);
    const rl = mse(rL, noise, n);
    const inside = mw.map((_, i) => -0.5 * beta * (mw[i] - ml[i] - (rw[i] - rl[i])));
    const loss = mean(inside.map((z) => Math.log1p(Math.exp(-z))));
    const acc = mean(inside.map((z) => (z > 0 ? 1 : z === 0 ? 0.5 : 0)));
    expect(inside[3] === 0).toBe(true);
    expect(inside.slice(0, 3).some((z) => Math.abs(z) > 0.1)).toBe(true);
    expect(Math.abs(got.loss - loss)).toBeLessThan(1e-6);
    expect(Math.abs(got.raw_model_loss - 0.5 * (mean(mw) + mean(ml)))).toBeLessThan(1e-6);
    expect(Math.abs(got.ref_loss - 0.5 * (mean(rw) + mean(rl)))).toBeLessThan(1e-6);
    expect(got.implicit_acc).toBeCloseTo(acc, 7);
    expect(Math.abs(got.model_diff - mean(mw.map((v, i) => v - ml[i])))).toBeLessThan(1e-6);
  });

  it("adds RPO's winner likelihood term and DPO-Positive's penalty as written, and their gradients", () => {
    const n = 4;
    const rng = new Rng(5);
    const noise = rng.normals(n * PER);
    const near = (scale: number) => Float32Array.from(noise, (v) => v + scale * rng.normal());
    // Pairs 0 and 2: the policy fits the winner worse than the reference (the penalty is active); 1 and 3: better.
    const pW = near(0.3);
    const rW = near(0.3);
    for (const i of [0, 2])
      for (let j = 0; j < PER; j++)
        pW[i * PER + j] = noise[i * PER + j] + 1.5 * (rW[i * PER + j] - noise[i * PER + j]);
    for (const i of [1, 3])
      for (let j = 0; j < PER; j++)
        pW[i * PER + j] = noise[i * PER + j] + 0.5 * (rW[i * PER + j] - noise[i * PER + j]);
    const pL = near(0.35);
    const rL = near(0.3);
    const [beta, alpha, lambda] = [40, 0.7, 3];
    const shape: [number, number, number, number] = [n, S, S, 3];
    const predictions = () => ({
      noise: tf.tensor4d(noise, shape),
      policyW: tf.tensor4d(pW, shape),
      policyL: tf.tensor4d(pL, shape),
      refW: tf.tensor4d(rW, shape),
      refL: tf.tensor4d(rL, shape),
    });
    const got = values(
      tidyLoss(() =>
        dpoLossFromPredictions(predictions(), { beta, sftWeight: alpha, dpoPositiveLambda: lambda }),
      ),
    );
    const mw = mse(pW, noise, n);
    const ml = mse(pL, noise, n);
    const rw = mse(rW, noise, n);
    const rl = mse(rL, noise, n);
    const gap = mw.map((v, i) => v - rw[i]);
    expect(gap[0] > 0 && gap[2] > 0 && gap[1] < 0 && gap[3] < 0).toBe(true);
    const z = mw.map(
      (_, i) => -0.5 * beta * (mw[i] - ml[i] - (rw[i] - rl[i]) + lambda * Math.max(0, gap[i])),
    );
    const want = mean(z.map((v) => Math.log1p(Math.exp(-v)))) + alpha * mean(mw);
    expect(Math.abs(got.loss - want)).toBeLessThan(1e-5);
    expect(Math.abs(got.winner_gap - mean(gap))).toBeLessThan(1e-6);
    // implicit_acc stays the plain DPO margin's: the penalty changes the loss, not what counts as preferred.
    const acc = mean(mw.map((_, i) => (mw[i] - ml[i] - (rw[i] - rl[i]) < 0 ? 1 : 0)));
    expect(got.implicit_acc).toBeCloseTo(acc, 7);
    // With both weights 0 (or unset) the loss is plain Diffusion-DPO.
    const plain = values(tidyLoss(() => dpoLossFromPredictions(predictions(), { beta })));
    const zero = values(
      tidyLoss(() => dpoLossFromPredictions(predictions(), { beta, sftWeight: 0, dpoPositiveLambda: 0 })),
    );
    expect(zero.loss).toBe(plain.loss);
    // d loss / d ε_θ^w for pair 0 (penalty active): −σ(−z₀)·(−β/2)(1 + λ)·∂mse₀/∂p + α·∂mse₀/∂p / n, with
    // ∂mse₀/∂p = 2(p − ε)/PER, all divided by n for the mean over pairs.
    const grad = tf.tidy(() => {
      const p = predictions();
      const g = tf.grad(
        (w: tf.Tensor) =>
          dpoLossFromPredictions(
            { ...p, policyW: w as tf.Tensor4D },
            { beta, sftWeight: alpha, dpoPositiveLambda: lambda },
          ).loss,
      );
      return g(p.policyW).dataSync();
    });
    const sig = (v: number) => 1 / (1 + Math.exp(-v));
    for (const [i, j] of [
      [0, 5],
      [1, 17],
      [2, 100],
    ]) {
      const dMse = (2 * (pW[i * PER + j] - noise[i * PER + j])) / PER;
      const active = gap[i] > 0 ? 1 + lambda : 1;
      const want = (sig(-z[i]) * 0.5 * beta * active * dMse) / n + (alpha * dMse) / n;
      expect(Math.abs(grad[i * PER + j] - want)).toBeLessThan(1e-4 * Math.max(1, Math.abs(want)));
    }
    expect(() =>
      values(tidyLoss(() => dpoLossFromPredictions(predictions(), { beta, sftWeight: -1 }))),
    ).toThrow(/sftWeight/);
  });

  it("ε-MSE from fixed predictions is the mean of per-sample pixel means", () => {
    const rng = new Rng(2);
    const a = rng.normals(3 * PER);
    const b = rng.normals(3 * PER);
    const got = values(
      tidyLoss(() => epsMseFromPredictions(tf.tensor4d(a, [3, S, S, 3]), tf.tensor4d(b, [3, S, S, 3]))),
    );
    expect(Math.abs(got.loss - mean(mse(a, b, 3)))).toBeLessThan(1e-6);
  });

  it("improver mixture from fixed predictions reports the overall and per-task means", () => {
    const rng = new Rng(3);
    const a = rng.normals(4 * PER);
    const b = rng.normals(4 * PER);
    const plan: ImproverSamplePlan[] = [
      { task: "improve", target: "winner", condition: "loser", text: true },
      { task: "reconstruct", target: "loser", condition: "loser", text: false },
      { task: "improve", target: "winner", condition: "loser", text: true },
      { task: "reconstruct", target: "winner", condition: "winner", text: false },
    ];
    const got = values(
      tidyLoss(() =>
        improverLossFromPredictions(tf.tensor4d(a, [4, S, S, 3]), tf.tensor4d(b, [4, S, S, 3]), plan),
      ),
    );
    const m = mse(a, b, 4);
    expect(Math.abs(got.loss - mean(m))).toBeLessThan(1e-6);
    expect(Math.abs(got.loss_improve - (m[0] + m[2]) / 2)).toBeLessThan(1e-6);
    expect(Math.abs(got.loss_reconstruct - (m[1] + m[3]) / 2)).toBeLessThan(1e-6);
    expect(got.loss_unconditional).toBeUndefined();
  });
});

describe("improver task plan", () => {
  it("draws tasks with the configured probabilities and the right targets and conditions", () => {
    const plan = planImproverBatch(20000, new Rng(4), DEFAULT_IMPROVER_TASKS);
    const freq = (t: string) => plan.filter((p) => p.task === t).length / plan.length;
    expect(Math.abs(freq("improve") - 0.6)).toBeLessThan(0.015);
    expect(Math.abs(freq("reconstruct") - 0.2)).toBeLessThan(0.015);
    expect(Math.abs(freq("unconditional") - 0.2)).toBeLessThan(0.015);
    for (const p of plan) {
      if (p.task === "improve")
        expect(p).toEqual({ task: "improve", target: "winner", condition: "loser", text: true });
      if (p.task === "reconstruct") expect(p.condition).toBe(p.target);
      if (p.task === "unconditional") expect(p.condition).toBe("none");
      if (p.task !== "improve") expect(p.text).toBe(false);
    }
    const winners = plan.filter((p) => p.task === "unconditional" && p.target === "winner").length;
    expect(Math.abs(winners / plan.filter((p) => p.task === "unconditional").length - 0.5)).toBeLessThan(
      0.03,
    );
    expect(() =>
      planImproverBatch(1, new Rng(1), { improve: 0.5, reconstruct: 0.2, unconditional: 0.2 }),
    ).toThrow(/sum to 1/);
  });
});

describe("model-level losses", () => {
  let policy: DiffusionModel;
  let reference: DiffusionModel;
  const prompts = ["a small red circle on a black background", "a large cyan triangle on a navy background"];
  const winners = randomImages(2, S, 10);
  const losers = randomImages(2, S, 11);
  beforeAll(() => {
    reference = createModel(microConfig(), 7, { trainable: false });
    randomizeWeights(reference, 70, 0.15);
    policy = cloneModel(reference);
    randomizeWeights(policy, 71, 0.15);
  });
  afterAll(() => {
    policy.dispose();
    reference.dispose();
  });

  it("DPO shares t and ε between winner and loser and matches a recomputation with separate passes", () => {
    const beta = 200;
    const got = values(dpoLoss(policy, reference, { prompts, winners, losers }, new Rng(5), { beta }));
    const rng = new Rng(5);
    const t = drawTimesteps(rng, 2, 1000);
    const want = tf.tidy(() => {
      const noise = drawNoise(rng, [2, S, S, 3]);
      const toModel = (d: Float32Array) => tf.sub(tf.mul(tf.tensor4d(d, [2, S, S, 3]), 2), 1) as tf.Tensor4D;
      const xw = addNoise(policy.schedule, toModel(winners.data), noise, t);
      const xl = addNoise(policy.schedule, toModel(losers.data), noise, t);
      const m = (model: DiffusionModel, x: tf.Tensor4D) =>
        tf.mean(tf.square(tf.sub(model.predictEps(x, t, prompts), noise)), [1, 2, 3]);
      const inside = tf.mul(
        tf.sub(tf.sub(m(policy, xw), m(policy, xl)), tf.sub(m(reference, xw), m(reference, xl))),
        -beta / 2,
      );
      return tf.neg(tf.mean(tf.log(tf.sigmoid(inside)))).dataSync()[0];
    });
    expect(Math.abs(got.loss - want)).toBeLessThan(1e-5 * Math.max(1, Math.abs(want)));
  });

  it("DPO of a model against itself is log 2 with every pair a tie", () => {
    const got = values(
      dpoLoss(reference, reference, { prompts, winners, losers }, new Rng(6), { beta: 1000 }),
    );
    expect(got.loss).toBeCloseTo(Math.log(2), 6);
    expect(got.implicit_acc).toBe(0.5);
    expect(got.raw_model_loss).toBe(got.ref_loss);
  });

  it("SPIN is DPO with the real images preferred over the previous iterate's samples", () => {
    const spin = values(
      spinLoss(policy, reference, { prompts, real: winners, generated: losers }, new Rng(8), { beta: 300 }),
    );
    const dpo = values(dpoLoss(policy, reference, { prompts, winners, losers }, new Rng(8), { beta: 300 }));
    expect(spin).toEqual(dpo);
  });

  it("ε-MSE draws dropout, t and ε from the rng in that order", () => {
    const got = values(epsMseLoss(policy, { prompts, images: winners }, new Rng(9), { promptDropout: 0.5 }));
    const rng = new Rng(9);
    const kept = prompts.map((p) => (rng.next() < 0.5 ? "" : p));
    const t = drawTimesteps(rng, 2, 1000);
    const want = tf.tidy(() => {
      const noise = drawNoise(rng, [2, S, S, 3]);
      const x0 = tf.sub(tf.mul(tf.tensor4d(winners.data, [2, S, S, 3]), 2), 1) as tf.Tensor4D;
      return tf
        .mean(tf.square(tf.sub(policy.predictEps(addNoise(policy.schedule, x0, noise, t), t, kept), noise)))
        .dataSync()[0];
    });
    expect(Math.abs(got.loss - want)).toBeLessThan(1e-6);
  });

  it("improver loss builds targets and conditions from the plan", () => {
    const improver = improverFromPolicy(policy);
    randomizeWeights(improver, 72, 0.15);
    const n = 6;
    const w = randomImages(n, S, 12);
    const l = randomImages(n, S, 13);
    const ps = new Array(n).fill(prompts[0]);
    const got = values(improverLoss(improver, { prompts: ps, winners: w, losers: l }, new Rng(10)));
    const rng = new Rng(10);
    const plan = planImproverBatch(n, rng, DEFAULT_IMPROVER_TASKS);
    const t = drawTimesteps(rng, n, 1000);
    const want = tf.tidy(() => {
      const noise = drawNoise(rng, [n, S, S, 3]);
      const img = (b: typeof w, i: number) =>
        tf.sub(tf.mul(tf.tensor4d(b.data.slice(i * PER, (i + 1) * PER), [1, S, S, 3]), 2), 1);
      const losses: number[] = [];
      for (let i = 0; i < n; i++) {
        const p = plan[i];
        const target = img(p.target === "winner" ? w : l, i) as tf.Tensor4D;
        const cond = (
          p.condition === "none" ? tf.zeros([1, S, S, 3]) : img(p.condition === "winner" ? w : l, i)
        ) as tf.Tensor4D;
        const e = tf.slice(noise, [i], [1]) as tf.Tensor4D;
        const pred = improver.predictEps(
          addNoise(improver.schedule, target, e, [t[i]]),
          [t[i]],
          [p.text ? ps[i] : ""],
          cond,
        );
        losses.push(tf.mean(tf.square(tf.sub(pred, e))).dataSync()[0]);
      }
      return mean(losses);
    });
    expect(new Set(plan.map((p) => p.task)).size).toBeGreaterThan(1);
    expect(Math.abs(got.loss - want)).toBeLessThan(1e-6);
    improver.dispose();
  });
});

describe("finite-difference gradient check on a tiny network", () => {
  /** Directional derivative of a loss along the normalised gradient vs central differences. */
  function check(model: DiffusionModel, loss: () => LossOutput): void {
    const vars = [...model.params.values()];
    const { value, grads } = tf.variableGrads(() => {
      const out = loss();
      const l = out.loss;
      for (const m of Object.values(out.metrics)) if (m !== l) m.dispose();
      return l;
    }, vars);
    value.dispose();
    // Direction: the analytic gradient itself (normalised), so the directional derivative |g| is as
    // large as possible relative to float32 rounding; a wrong gradient still disagrees with the
    // finite difference along it.
    const dirs = vars.map((v) =>
      grads[v.name] ? grads[v.name].dataSync().slice() : new Float32Array(v.size),
    );
    let norm = 0;
    for (const d of dirs) for (const x of d) norm += x * x;
    norm = Math.sqrt(norm);
    const analytic = norm;
    tf.dispose(Object.values(grads));
    const originals = vars.map((v) => v.dataSync().slice());
    const at = (h: number) => {
      vars.forEach((v, i) => {
        const moved = Float32Array.from(originals[i], (x, j) => x + (h * dirs[i][j]) / norm);
        const t = tf.tensor(moved, v.shape);
        v.assign(t);
        t.dispose();
      });
      const out = loss();
      const l = out.loss.dataSync()[0];
      disposeLossOutput(out);
      return l;
    };
    const h = 1e-2;
    const fd = (at(h) - at(-h)) / (2 * h);
    at(0);
    expect(analytic).toBeGreaterThan(1e-3);
    expect(Math.abs(fd - analytic)).toBeLessThan(0.01 * analytic);
  }

  it("Diffusion-DPO", () => {
    const reference = createModel(microConfig(), 8, { trainable: false });
    randomizeWeights(reference, 80, 0.15);
    const policy = cloneModel(reference);
    randomizeWeights(policy, 81, 0.15);
    const batch = {
      prompts: ["a red circle", ""],
      winners: randomImages(2, S, 1),
      losers: randomImages(2, S, 2),
    };
    check(policy, () => dpoLoss(policy, reference, batch, new Rng(3), { beta: 20 }));
    policy.dispose();
    reference.dispose();
  });

  it("improver mixture", () => {
    const policy = createModel(microConfig(), 9);
    const improver = improverFromPolicy(policy);
    policy.dispose();
    randomizeWeights(improver, 90, 0.15);
    const batch = {
      prompts: ["a red circle", "a blue square", ""],
      winners: randomImages(3, S, 3),
      losers: randomImages(3, S, 4),
    };
    check(improver, () => improverLoss(improver, batch, new Rng(5)));
    improver.dispose();
  });
});
