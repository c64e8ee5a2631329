import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Image } from "./image.js";
import { readPairs } from "./pair-dataset.js";
import { comboSplit, parseShapesPrompt } from "./shapes-grammar.js";
import {
  generateShapesPairs,
  type RewardFn,
  type ShapesPairsStats,
  writeShapesPairs,
} from "./shapes-pairs.js";

/** A cheap stand-in reward (mean pixel value): the pair logic does not depend on which reward it is. */
const meanPixel: RewardFn = (img: Image) => {
  let s = 0;
  for (const v of img.data) s += v;
  return s / img.data.length;
};

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "idpo-shapes-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("generateShapesPairs", () => {
  it("is deterministic from the seed and draws only from the asked split", () => {
    const cfg = { count: 30, size: 8, seed: 5, reward: meanPixel };
    const a = [...generateShapesPairs(cfg)];
    const b = [...generateShapesPairs(cfg)];
    const c = [...generateShapesPairs({ ...cfg, seed: 6 })];
    expect(a.length).toBe(30);
    expect(a.map((p) => p.winner.data)).toEqual(b.map((p) => p.winner.data));
    expect(a.map((p) => p.prompt)).not.toEqual(c.map((p) => p.prompt));
    for (const p of a) expect(comboSplit(p.parsed.shape, p.parsed.color, p.parsed.bg)).toBe("train");
    for (const p of generateShapesPairs({ ...cfg, split: "test" })) {
      const q = parseShapesPrompt(p.prompt);
      expect(comboSplit(q.shape, q.color, q.bg)).toBe("test");
    }
  });

  it("drops near-ties and labels Bradley-Terry: upsets match Σ σ(−|ΔR|/0.05) within 3 standard deviations", () => {
    const stats: ShapesPairsStats = { pairs: 0, droppedNearTies: 0, upsets: 0 };
    let expectedUpsets = 0;
    let variance = 0;
    let upsets = 0;
    for (const p of generateShapesPairs({ count: 3000, size: 8, seed: 2, reward: meanPixel }, stats)) {
      const gap = Math.abs(p.winnerReward - p.loserReward);
      expect(gap).toBeGreaterThanOrEqual(0.01);
      expect(p.winnerReward).toBe(meanPixel(p.winner, p.parsed));
      const pUpset = 1 / (1 + Math.exp(gap / 0.05));
      expectedUpsets += pUpset;
      variance += pUpset * (1 - pUpset);
      if (p.winnerReward < p.loserReward) upsets++;
    }
    expect(stats.pairs).toBe(3000);
    expect(stats.upsets).toBe(upsets);
    expect(stats.droppedNearTies).toBeGreaterThan(0);
    expect(Math.abs(upsets - expectedUpsets)).toBeLessThan(3 * Math.sqrt(variance));
  });

  it("quantises images to 8 bits before scoring, so stored rewards match the stored images", () => {
    for (const p of generateShapesPairs({ count: 5, size: 8, seed: 1, reward: meanPixel })) {
      for (const v of p.winner.data) expect(Math.abs(v * 255 - Math.round(v * 255))).toBeLessThan(1e-4);
    }
  });

  it("refuses bad configuration", () => {
    expect(() => [...generateShapesPairs({ count: -1, size: 8, seed: 1, reward: meanPixel })]).toThrow(
      /count/,
    );
    expect(() => [...generateShapesPairs({ count: 1, size: 2, seed: 1, reward: meanPixel })]).toThrow(/size/);
    expect(() => [...generateShapesPairs({ count: 1, size: 8, seed: 1, reward: () => Number.NaN })]).toThrow(
      /returned NaN/,
    );
  });
});

describe("writeShapesPairs", () => {
  it("writes a dataset whose records read back with their rewards and strengths", async () => {
    const dir = join(root, "ds");
    const progress: number[] = [];
    const { manifest, stats } = await writeShapesPairs(
      dir,
      { count: 40, size: 8, seed: 3, reward: meanPixel },
      { shardSize: 16, onProgress: (d) => progress.push(d) },
    );
    expect(manifest.count).toBe(40);
    expect(manifest.source).toBe("shapes");
    expect(manifest.seed).toBe(3);
    expect(manifest.shards.length).toBe(3);
    expect(manifest.info).toMatchObject({ split: "train", temperature: 0.05, minRewardGap: 0.01, pairs: 40 });
    expect(manifest.info.droppedNearTies).toBe(stats.droppedNearTies);
    expect(progress.at(-1)).toBe(40);
    const generated = [...generateShapesPairs({ count: 40, size: 8, seed: 3, reward: meanPixel })];
    let i = 0;
    for await (const r of readPairs(dir)) {
      expect(r.prompt).toBe(generated[i].prompt);
      expect(r.winnerReward).toBe(generated[i].winnerReward);
      expect(meanPixel(r.winner, parseShapesPrompt(r.prompt))).toBeCloseTo(r.winnerReward ?? Number.NaN, 6);
      expect(r.meta).toEqual({
        uw: Math.round(generated[i].winnerStrength * 1e4) / 1e4,
        ul: Math.round(generated[i].loserStrength * 1e4) / 1e4,
      });
      i++;
    }
    expect(i).toBe(40);
  });
});
