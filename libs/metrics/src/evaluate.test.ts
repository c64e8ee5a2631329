import { BACKGROUNDS, renderIdeal, solidImage } from "@idpo/data";
import { describe, expect, it } from "vitest";
import { evaluateSet, InvalidItemError, scoreImages } from "./evaluate.js";
import { oracleReward } from "./oracle.js";
import { meanCI } from "./stats.js";
import { vendiScore } from "./vendi.js";

const P1 = "a large red circle on a black background";
const P2 = "a small cyan triangle on a navy background";

describe("scoreImages", () => {
  it("scores each image against its prompt and names the first bad item", () => {
    const imgs = [renderIdeal(P1, 16), renderIdeal(P2, 16)];
    expect(scoreImages(imgs, [P1, P2], { size: 16 })).toEqual([
      oracleReward(imgs[0], P1),
      oracleReward(imgs[1], P2),
    ]);
    const wrongSize = () => scoreImages([imgs[0], renderIdeal(P2, 32)], [P1, P2], { size: 16 });
    expect(wrongSize).toThrow(InvalidItemError);
    expect(wrongSize).toThrow(/images\[1\]: image is 32x32, this world's images are 16x16/);
    try {
      scoreImages(imgs, [P1, "a dog"]);
    } catch (e) {
      expect(e).toBeInstanceOf(InvalidItemError);
      expect((e as InvalidItemError).index).toBe(1);
      expect((e as Error).message).toMatch(/outside the shapes grammar/);
    }
  });
});

describe("evaluateSet", () => {
  it("reports mean reward with CI, component means, per-prompt Vendi averaged, and the win-rate against a reference", () => {
    const ideal1 = renderIdeal(P1, 16);
    const shifted = renderIdeal({ size: "medium", color: "red", shape: "circle", bg: "black" }, 16);
    const ideal2 = renderIdeal(P2, 16);
    const items = [
      { image: ideal1, prompt: P1, seed: 1 },
      { image: shifted, prompt: P1, seed: 2 },
      { image: ideal2, prompt: P2, seed: 1 },
    ];
    const bg1 = solidImage(16, 16, [0, 0, 0]);
    const bg2 = solidImage(16, 16, [...BACKGROUNDS.navy]);
    const reference = [
      { image: bg1, prompt: P1, seed: 1 },
      { image: ideal1, prompt: P1, seed: 2 },
      { image: bg2, prompt: P2, seed: 1 },
    ];
    const ev = evaluateSet(items, { reference, size: 16 });
    const rewards = items.map((it) => oracleReward(it.image, it.prompt).reward);
    expect(ev.n).toBe(3);
    expect(ev.reward).toEqual(meanCI(rewards));
    expect(ev.components.color).toBeCloseTo(
      items.reduce((s, it) => s + oracleReward(it.image, it.prompt).color, 0) / 3,
      12,
    );
    expect(ev.perPrompt).toEqual([
      { prompt: P1, n: 2, meanReward: (rewards[0] + rewards[1]) / 2, vendi: vendiScore([ideal1, shifted]) },
      { prompt: P2, n: 1, meanReward: rewards[2], vendi: null },
    ]);
    expect(ev.vendi).toBe(vendiScore([ideal1, shifted]));
    expect(ev.vendiPrompts).toBe(1);
    // Seed 1 beats a blank image on both prompts; seed 2 of P1 (medium instead of large) loses to the ideal.
    expect(ev.winRate).toMatchObject({ wins: 2, losses: 1, ties: 0, matched: 3 });
    expect(ev.winRate?.winRate).toBeCloseTo(2 / 3, 12);
    expect(ev.referenceReward?.mean).toBeCloseTo(
      (oracleReward(bg1, P1).reward + oracleReward(ideal1, P1).reward + oracleReward(bg2, P2).reward) / 3,
      12,
    );
    expect(evaluateSet(items).winRate).toBeNull();
  });

  it("refuses empty sets and names bad reference items", () => {
    expect(() => evaluateSet([])).toThrow(/empty/);
    const items = [{ image: renderIdeal(P1, 16), prompt: P1 }];
    expect(() => evaluateSet(items, { reference: [] })).toThrow(/reference set is empty/);
    expect(() =>
      evaluateSet(items, { reference: [items[0], { image: solidImage(16, 8, [0, 0, 0]), prompt: P1 }] }),
    ).toThrow(/reference\[1\]: image is 16x8, the oracle needs a square image/);
  });
});
