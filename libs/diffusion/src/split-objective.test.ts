import { beforeAll, describe, expect, it } from "vitest";
import { disposeLossOutput } from "./loss-output.js";
import { cloneModel, createModel, type DiffusionModel, improverFromPolicy } from "./model.js";
import { Rng } from "./rng.js";
import { type ObjectiveSpec, splitObjective } from "./split-objective.js";
import { nanoConfig, randomImages, randomizeWeights, setupTestBackend } from "./test-fixtures.js";

beforeAll(setupTestBackend);

const S = nanoConfig().unet.imageSize;
const PROMPTS = ["a red circle", "a blue square", "", "a green triangle", "a small red square"];
const pairs = { prompts: PROMPTS, winners: randomImages(5, S, 1), losers: randomImages(5, S, 2) };

const CASES: { spec: ObjectiveSpec; improver?: boolean; batch: unknown }[] = [
  { spec: { kind: "eps-mse", promptDropout: 0.5 }, batch: { prompts: PROMPTS, images: pairs.winners } },
  { spec: { kind: "improver" }, improver: true, batch: pairs },
  { spec: { kind: "dpo", options: { beta: 300 } }, batch: pairs },
  {
    spec: { kind: "spin", options: { beta: 300 } },
    batch: { prompts: PROMPTS, real: pairs.winners, generated: pairs.losers },
  },
];

function models(improver: boolean): { model: DiffusionModel; reference: DiffusionModel } {
  const reference = createModel(nanoConfig(), 3, { trainable: false });
  randomizeWeights(reference, 4, 0.2);
  const policy = cloneModel(reference);
  randomizeWeights(policy, 5, 0.2);
  if (!improver) return { model: policy, reference };
  const model = improverFromPolicy(policy);
  policy.dispose();
  return { model, reference };
}

function values(out: { metrics: Record<string, { dataSync(): ArrayLike<number> }> }): Record<string, number> {
  return Object.fromEntries(Object.entries(out.metrics).map(([k, v]) => [k, v.dataSync()[0]]));
}

describe("splitObjective", () => {
  for (const c of CASES) {
    it(`${c.spec.kind}: a batch's loss and metrics are the weighted sums of its slices' with the sliced draws`, () => {
      const { model, reference } = models(c.improver === true);
      const split = splitObjective(c.spec, model, reference);
      expect(split.size(c.batch)).toBe(5);
      const draws = split.draw(c.batch, new Rng(7, 3));
      const full = split.loss(c.batch, draws);
      const whole = values(full);
      const combined: Record<string, { total: number; weight: number }> = {};
      let loss = 0;
      for (const [start, end] of [
        [0, 2],
        [2, 5],
      ]) {
        const s = split.slice(c.batch, draws, start, end);
        expect(split.size(s.batch)).toBe(end - start);
        const out = split.loss(s.batch, s.draws);
        const v = values(out);
        loss += ((end - start) / 5) * v.loss;
        const w = split.metricWeights(s.batch, s.draws, Object.keys(v));
        for (const [k, x] of Object.entries(v)) {
          if (!(w[k] > 0)) continue;
          combined[k] ??= { total: 0, weight: 0 };
          combined[k].total += w[k] * x;
          combined[k].weight += w[k];
        }
        disposeLossOutput(out);
      }
      expect(loss).toBeCloseTo(whole.loss, 5);
      expect(Object.keys(combined).sort()).toEqual(Object.keys(whole).sort());
      for (const [k, x] of Object.entries(whole))
        expect(combined[k].total / combined[k].weight).toBeCloseTo(x, 5);
      disposeLossOutput(full);
      expect(() => split.slice(c.batch, draws, 3, 6)).toThrow(/slice \[3, 6\) of a batch of 5/);
      model.dispose();
      reference.dispose();
    });
  }

  it("DPO draws every t, then ε, from the rng (dpoLoss's order) and needs a reference", () => {
    const { model, reference } = models(false);
    const split = splitObjective({ kind: "dpo", options: { beta: 300 } }, model, reference);
    const a = split.loss(pairs, split.draw(pairs, new Rng(9)));
    const rng = new Rng(9);
    const t = Array.from({ length: 5 }, () => rng.int(model.schedule.timesteps));
    const draws = split.draw(pairs, new Rng(9)) as { t: number[]; noise: Float32Array };
    expect(draws.t).toEqual(t);
    expect(draws.noise[0]).toBe(rng.normals(1)[0]);
    disposeLossOutput(a);
    expect(() => splitObjective({ kind: "dpo", options: { beta: 1 } }, model)).toThrow(/needs a reference/);
    model.dispose();
    reference.dispose();
  });
});
