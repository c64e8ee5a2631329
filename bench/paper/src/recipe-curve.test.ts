import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { paperConfig } from "./config.js";
import {
  measuresRecipeCurve,
  type RecipeCurve,
  readRecipeCurve,
  recipeCurveInputs,
  writeRecipeCurve,
} from "./recipe-curve.js";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "idpo-recipe-curve-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const curve: RecipeCurve = {
  baseCurve: [
    { step: 500, reward: 0.61, ci: 0.02 },
    { step: 1000, reward: 0.7, ci: 0.015 },
  ],
  baseCurveReference: { label: "the shipped base", reward: 0.698, ci: 0.016 },
};

describe("the shipped base's stored learning curve", () => {
  it("is measured by the recipe's seed of a pretrained configuration only", () => {
    const cfg = paperConfig("default");
    expect(measuresRecipeCurve(cfg, 1)).toBe(true);
    expect(measuresRecipeCurve(cfg, 2)).toBe(false);
    expect(measuresRecipeCurve(paperConfig("scratch"), 1)).toBe(false);
    expect(measuresRecipeCurve({ ...cfg, baseCurvePoints: 0 }, 1)).toBe(false);
  });

  it("reads back what was written under the same inputs, and nothing once an input changes", async () => {
    const cfg = paperConfig("default");
    const path = join(dir, "curve.json");
    expect(await readRecipeCurve(path, cfg)).toBeUndefined();
    await writeRecipeCurve(path, cfg, curve, "today by a test");
    expect(await readRecipeCurve(path, cfg)).toEqual({
      inputs: recipeCurveInputs(cfg),
      measured: "today by a test",
      ...curve,
    });
    // What the curve does not depend on leaves it valid; the recipe, the validation set or the sampler do not.
    expect(await readRecipeCurve(path, { ...cfg, tuning: { ...cfg.tuning, extendTo: 12 } })).toBeDefined();
    expect(await readRecipeCurve(path, { ...cfg, base: { ...cfg.base, steps: 900 } })).toBeUndefined();
    expect(
      await readRecipeCurve(path, { ...cfg, eval: { ...cfg.eval, validationSamplesPerPrompt: 4 } }),
    ).toBeUndefined();
    expect(
      await readRecipeCurve(path, { ...cfg, sampling: { ...cfg.sampling, guidanceScale: 2 } }),
    ).toBeUndefined();
  });

  it("fails loudly, naming the file, on one it cannot read", async () => {
    const cfg = paperConfig("default");
    const bad = join(dir, "bad.json");
    await writeFile(bad, "{ not json");
    await expect(readRecipeCurve(bad, cfg)).rejects.toThrow(/bad\.json: not JSON/);
    await writeFile(bad, JSON.stringify({ inputs: recipeCurveInputs(cfg), measured: "x", baseCurve: [] }));
    await expect(readRecipeCurve(bad, cfg)).rejects.toThrow(/bad\.json: no curve/);
  });
});
