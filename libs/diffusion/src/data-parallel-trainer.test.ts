import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataParallelTrainer, sliceBounds } from "./data-parallel-trainer.js";
import { cloneModel, createModel, type DiffusionModel, improverFromPolicy } from "./model.js";
import { dpoObjective, improverObjective, pretrainObjective, spinObjective } from "./objectives.js";
import { nanoConfig, randomImages, randomizeWeights, setupTestBackend } from "./test-fixtures.js";
import {
  type Objective,
  type StepReport,
  Trainer,
  type TrainerConfig,
  type TrainingDriver,
} from "./trainer.js";

beforeAll(setupTestBackend);

const S = nanoConfig().unet.imageSize;
const PROMPTS = ["a red circle", "a blue square", "", "a green triangle", "a small red square"];

/** One kind of job: its objective on a given model and reference, and its microbatches of 5 examples. */
interface Kind {
  name: string;
  objective(model: DiffusionModel, reference: DiffusionModel): Objective<unknown>;
  improver?: boolean;
  batch(step: number, j: number): unknown;
}

const pairs = (step: number, j: number) => ({
  prompts: PROMPTS,
  winners: randomImages(5, S, 100 * step + 2 * j),
  losers: randomImages(5, S, 100 * step + 2 * j + 1),
});

const KINDS: Kind[] = [
  {
    name: "ε-MSE (pretraining, SFT)",
    objective: (m) => pretrainObjective(m, 0.3) as Objective<unknown>,
    batch: (step, j) => ({ prompts: PROMPTS, images: randomImages(5, S, 100 * step + j) }),
  },
  {
    name: "improver mixture",
    improver: true,
    objective: (m) => improverObjective(m) as Objective<unknown>,
    batch: pairs,
  },
  {
    name: "Diffusion-DPO",
    objective: (m, r) => dpoObjective(m, r, { beta: 200 }) as Objective<unknown>,
    batch: pairs,
  },
  {
    name: "SPIN",
    objective: (m, r) => spinObjective(m, r, { beta: 200 }) as Objective<unknown>,
    batch: (step, j) => {
      const p = pairs(step, j);
      return { prompts: p.prompts, real: p.winners, generated: p.losers };
    },
  },
];

// Clipping on (max norm small enough to bite), EMA on, two microbatches of 5 examples per step.
const CONFIG: TrainerConfig = {
  schedule: { lr: 3e-3, warmupSteps: 2 },
  maxGradNorm: 0.05,
  emaDecay: 0.9,
  seed: 17,
};

/** A fresh policy (or improver) and reference with the same non-trivial weights. */
function models(kind: Kind): { model: DiffusionModel; reference: DiffusionModel } {
  const reference = createModel(nanoConfig(), 3, { trainable: false });
  randomizeWeights(reference, 4, 0.1);
  const policy = cloneModel(reference);
  if (!kind.improver) return { model: policy, reference };
  const model = improverFromPolicy(policy);
  policy.dispose();
  return { model, reference };
}

async function train(
  t: TrainingDriver<unknown>,
  kind: Kind,
  from: number,
  to: number,
): Promise<StepReport[]> {
  const out: StepReport[] = [];
  for (let k = from; k < to; k++) out.push(await t.step([kind.batch(k, 0), kind.batch(k, 1)]));
  return out;
}

function flat(t: TrainingDriver<unknown>): { params: Float32Array; m: Float32Array; ema: Float32Array } {
  const params = tf.tidy(() => tf.concat([...t.params.values()].map((v) => tf.reshape(v, [-1]))));
  const out = {
    params: params.dataSync() as Float32Array,
    m: t.optimizer.state().m.dataSync() as Float32Array,
    ema: t.ema!.state().average.dataSync() as Float32Array,
  };
  params.dispose();
  return out;
}

/** max |a − b| / max |b|. */
function relDiff(a: Float32Array, b: Float32Array): number {
  let d = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    d = Math.max(d, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return d / s;
}

describe("sliceBounds", () => {
  it("splits n examples into W contiguous slices whose sizes differ by at most one", () => {
    expect([0, 1, 2].map((w) => sliceBounds(5, 3, w))).toEqual([
      [0, 1],
      [1, 3],
      [3, 5],
    ]);
    expect([0, 1].map((w) => sliceBounds(1, 2, w))).toEqual([
      [0, 0],
      [0, 1],
    ]);
  });
});

describe("DataParallelTrainer", () => {
  const open: TrainingDriver<unknown>[] = [];
  afterAll(async () => {
    for (const t of open) await t.dispose();
  });

  for (const kind of KINDS) {
    it(`${kind.name}: 2 workers reach the weights of Trainer after 10 steps, and a resumed run those of an uninterrupted one`, async () => {
      const a = models(kind);
      const single = new Trainer(a.model.params, kind.objective(a.model, a.reference), CONFIG);
      const one = await train(single, kind, 0, 10);
      const b = models(kind);
      const dp = await DataParallelTrainer.start(
        b.model.params,
        kind.objective(b.model, b.reference),
        CONFIG,
        {
          workers: 2,
        },
      );
      open.push(dp);
      expect(dp.workers).toBe(2);
      const two = await train(dp, kind, 0, 4);
      const saved = { ...flat(dp), v: dp.optimizer.state().v.dataSync() as Float32Array };
      const iterations = dp.optimizer.iterations;
      const emaCount = dp.ema!.state().count;
      two.push(...(await train(dp, kind, 4, 10)));
      // Clipping was active (the norms are above the max), and the step reports agree.
      expect(Math.min(...one.map((r) => r.gradNorm))).toBeGreaterThan(CONFIG.maxGradNorm!);
      for (let k = 0; k < 10; k++) {
        expect(two[k].step).toBe(k + 1);
        expect(two[k].lr).toBe(one[k].lr);
        expect(two[k].gradNorm).toBeCloseTo(one[k].gradNorm, 3);
        expect(Object.keys(two[k].metrics).sort()).toEqual(Object.keys(one[k].metrics).sort());
        for (const [name, v] of Object.entries(one[k].metrics))
          expect(two[k].metrics[name]).toBeCloseTo(v, 3);
      }
      const w1 = flat(single);
      const w2 = flat(dp);
      expect(relDiff(w2.params, w1.params)).toBeLessThan(1e-4);
      expect(relDiff(w2.m, w1.m)).toBeLessThan(1e-3);
      expect(relDiff(w2.ema, w1.ema)).toBeLessThan(1e-4);
      // Not trivially equal: the weights moved.
      const start = models(kind);
      const w0 = tf.tidy(() => tf.concat([...start.model.params.values()].map((v) => tf.reshape(v, [-1]))));
      expect(relDiff(w1.params, w0.dataSync() as Float32Array)).toBeGreaterThan(1e-3);
      w0.dispose();

      // Resume after 4 steps in a new trainer from the saved weights, optimiser and EMA state.
      const d = models(kind);
      let off = 0;
      for (const p of d.model.params.values()) {
        const t = tf.tensor(saved.params.slice(off, off + p.size), p.shape);
        p.assign(t);
        t.dispose();
        off += p.size;
      }
      const resumed = await DataParallelTrainer.start(
        d.model.params,
        kind.objective(d.model, d.reference),
        CONFIG,
        { workers: 2 },
      );
      open.push(resumed);
      const state = [tf.tensor1d(saved.m), tf.tensor1d(saved.v), tf.tensor1d(saved.ema)];
      resumed.optimizer.loadState(iterations, state[0], state[1]);
      resumed.ema!.loadState(emaCount, state[2]);
      tf.dispose(state);
      resumed.setStepCount(4);
      const tail = await train(resumed, kind, 4, 10);
      expect(tail.map((r) => r.gradNorm)).toEqual(two.slice(4).map((r) => r.gradNorm));
      const w3 = flat(resumed);
      expect(relDiff(w3.params, w2.params)).toBe(0);
      expect(relDiff(w3.ema, w2.ema)).toBe(0);
      for (const m of [a, b, d, start]) {
        m.model.dispose();
        m.reference.dispose();
      }
      single.dispose();
      // Two worker pools and 36 steps of three trainers: generous on a loaded 2-core machine.
    }, 600_000);
  }

  it("rejects an objective without a split form and a bad worker count before starting workers", async () => {
    const m = createModel(nanoConfig(), 1);
    const plain: Objective<unknown> = () => {
      throw new Error("unused");
    };
    await expect(DataParallelTrainer.start(m.params, plain, CONFIG, { workers: 2 })).rejects.toThrow(
      /split form/,
    );
    await expect(
      DataParallelTrainer.start(m.params, pretrainObjective(m) as Objective<unknown>, CONFIG, { workers: 0 }),
    ).rejects.toThrow(/workers must be a positive integer/);
    m.dispose();
  });

  it("rejects a bad microbatch before dispatching it and keeps working afterwards", async () => {
    const m = createModel(nanoConfig(), 1);
    const dp = await DataParallelTrainer.start(m.params, pretrainObjective(m) as Objective<unknown>, CONFIG, {
      workers: 2,
    });
    open.push(dp);
    const good = { prompts: ["a", "b"], images: randomImages(2, S, 1) };
    const before = tf.memory().numTensors;
    await expect(dp.step([{ prompts: ["a"], images: randomImages(1, 8, 1) }])).rejects.toThrow(/8x8/);
    expect(dp.stepCount).toBe(0);
    await dp.step([good]);
    await dp.step([good]);
    expect(dp.stepCount).toBe(2);
    expect(tf.memory().numTensors).toBe(before);
    await dp.dispose();
    await expect(dp.step([good])).rejects.toThrow(/disposed/);
    m.dispose();
  });

  it("leaves no tensor behind after dispose", async () => {
    const m = createModel(nanoConfig(), 1);
    const before = tf.memory().numTensors;
    const dp = await DataParallelTrainer.start(m.params, pretrainObjective(m) as Objective<unknown>, CONFIG, {
      workers: 2,
    });
    await dp.step([{ prompts: ["a", "b"], images: randomImages(2, S, 1) }]);
    await dp.dispose();
    expect(tf.memory().numTensors).toBe(before);
    m.dispose();
  });
});
