import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { describe, expect, it } from "vitest";
import { paperConfig } from "./config.js";
import { deriveSeed, evenlySpaced, promptSets } from "./prompt-sets.js";

describe("prompt sets", () => {
  it("spreads picks evenly", () => {
    expect(evenlySpaced(10, 3)).toEqual([1, 5, 8]);
    expect(evenlySpaced(4, 4)).toEqual([0, 1, 2, 3]);
    expect(() => evenlySpaced(3, 4)).toThrow(/cannot pick 4 of 3/);
  });

  it("keeps validation disjoint from evaluated train prompts and test prompts held out", () => {
    const s = promptSets(paperConfig("default").eval, 1);
    const train = new Set(shapesPrompts("train").map(formatShapesPrompt));
    const test = new Set(shapesPrompts("test").map(formatShapesPrompt));
    expect(s.train.prompts).toHaveLength(16);
    expect(s.validation.prompts).toHaveLength(24);
    expect(s.test.prompts).toHaveLength(63);
    for (const p of [...s.train.prompts, ...s.validation.prompts]) expect(train.has(p)).toBe(true);
    for (const p of s.test.prompts) expect(test.has(p)).toBe(true);
    expect(s.validation.prompts.filter((p) => s.train.prompts.includes(p))).toEqual([]);
    expect(new Set(s.train.prompts).size).toBe(16);
  });

  it("fixes the seeds by master seed and set, not by model", () => {
    const a = promptSets(paperConfig("default").eval, 1);
    const b = promptSets(paperConfig("default").eval, 1);
    expect(a.test.seed).toBe(b.test.seed);
    expect(a.test.seed).not.toBe(a.train.seed);
    expect(promptSets(paperConfig("default").eval, 2).test.seed).not.toBe(a.test.seed);
    expect(deriveSeed(1, "x")).toBeLessThan(2 ** 31);
  });
});
