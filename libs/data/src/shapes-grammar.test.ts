import { describe, expect, it } from "vitest";
import {
  allShapesPrompts,
  BACKGROUND_NAMES,
  COLOR_NAMES,
  comboSplit,
  formatShapesPrompt,
  isAllowedPair,
  parseShapesPrompt,
  SHAPES,
  shapesPrompts,
} from "./shapes-grammar.js";

describe("shapes grammar", () => {
  it("drops exactly the five low-contrast (color, bg) pairs named in the design", () => {
    const dropped: string[] = [];
    for (const c of COLOR_NAMES)
      for (const b of BACKGROUND_NAMES) if (!isAllowedPair(c, b)) dropped.push(`${c}/${b}`);
    expect(dropped.sort()).toEqual(["blue/gray", "blue/navy", "green/gray", "white/beige", "white/white"]);
  });

  it("has 315 prompts, split into disjoint train and test sets of (shape, color, bg) combinations, ~20 % held out", () => {
    const all = allShapesPrompts();
    expect(all.length).toBe(3 * 35 * 3);
    const train = shapesPrompts("train");
    const test = shapesPrompts("test");
    expect(train.length + test.length).toBe(all.length);
    const combo = (p: { shape: string; color: string; bg: string }) => `${p.shape}/${p.color}/${p.bg}`;
    const trainCombos = new Set(train.map(combo));
    const testCombos = new Set(test.map(combo));
    for (const c of testCombos) expect(trainCombos.has(c)).toBe(false);
    expect(testCombos.size).toBe(21);
    expect(testCombos.size / (trainCombos.size + testCombos.size)).toBeCloseTo(0.2, 2);
    // Every shape, color and background is seen in training, and held-out combos use all of them too.
    for (const s of SHAPES)
      expect(train.some((p) => p.shape === s) && test.some((p) => p.shape === s)).toBe(true);
    for (const c of COLOR_NAMES) expect(train.some((p) => p.color === c)).toBe(true);
    for (const b of BACKGROUND_NAMES)
      expect(train.some((p) => p.bg === b) && test.some((p) => p.bg === b)).toBe(true);
    // Each test prompt carries all three sizes (size is not part of the held-out combination).
    expect(test.length).toBe(3 * testCombos.size);
    // Deterministic rule: shape 0 + color 0 + bg 0 ("circle red black") is held out.
    expect(comboSplit("circle", "red", "black")).toBe("test");
    expect(comboSplit("square", "red", "black")).toBe("train");
  });

  it("parses every prompt it formats, tolerating case and spacing", () => {
    for (const p of allShapesPrompts()) expect(parseShapesPrompt(formatShapesPrompt(p))).toEqual(p);
    expect(parseShapesPrompt("  A  Large BLUE triangle on a   beige background ")).toEqual({
      size: "large",
      color: "blue",
      shape: "triangle",
      bg: "beige",
    });
  });

  it("rejects prompts outside the grammar with an error naming the problem", () => {
    expect(() => parseShapesPrompt("a cat")).toThrow(/outside the shapes grammar/);
    expect(() => parseShapesPrompt("a huge red circle on a black background")).toThrow(/unknown size "huge"/);
    expect(() => parseShapesPrompt("a small purple circle on a black background")).toThrow(
      /unknown color "purple"/,
    );
    expect(() => parseShapesPrompt("a small red star on a black background")).toThrow(/unknown shape "star"/);
    expect(() => parseShapesPrompt("a small red circle on a pink background")).toThrow(
      /unknown background "pink"/,
    );
    expect(() => parseShapesPrompt("a small white circle on a beige background")).toThrow(/contrast/);
    expect(() => parseShapesPrompt("a small constructor circle on a black background")).toThrow(
      /unknown color/,
    );
  });
});
