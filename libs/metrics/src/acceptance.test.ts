import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  BACKGROUNDS,
  formatShapesPrompt,
  readPairs,
  renderIdeal,
  shapesPrompts,
  solidImage,
  writeShapesPairs,
} from "@idpo/data";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { oracleReward, oracleRewardValue } from "./oracle.js";
import { quantiles } from "./stats.js";

/** p5/p50/p95 found by the independent reference at S = 16 (docs/architecture.md). */
const REFERENCE = { winners: [0.67, 0.86, 0.96], losers: [0.51, 0.72, 0.9], ideal: [0.84, 0.95, 1.0] };

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "idpo-accept-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("shapes world acceptance", () => {
  it("ideal renders average >= 0.9 over the whole grammar at S = 16 and 32", () => {
    for (const s of [16, 32]) {
      const rewards = shapesPrompts("all").map((p) => oracleReward(renderIdeal(p, s), p).reward);
      const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
      expect(mean).toBeGreaterThanOrEqual(0.9);
    }
  });

  it("a pure background image scores <= 0.2 for every prompt", () => {
    for (const p of shapesPrompts("all")) {
      const r = oracleReward(solidImage(16, 16, [...BACKGROUNDS[p.bg]]), p);
      expect(r.reward).toBeLessThanOrEqual(0.2);
    }
  });

  it("a default offline dataset's winners span >= 0.2 (p5..p95); quantiles near the reference figures", async () => {
    const dir = join(root, "shapes16");
    await writeShapesPairs(dir, { count: 4000, size: 16, seed: 0, reward: oracleRewardValue });
    const winners: number[] = [];
    const losers: number[] = [];
    for await (const r of readPairs(dir)) {
      winners.push(r.winnerReward ?? Number.NaN);
      losers.push(r.loserReward ?? Number.NaN);
    }
    const ideal = shapesPrompts("all").map(
      (p) => oracleReward(renderIdeal(p, 16), formatShapesPrompt(p)).reward,
    );
    const ours = {
      winners: quantiles(winners, [0.05, 0.5, 0.95]),
      losers: quantiles(losers, [0.05, 0.5, 0.95]),
      ideal: quantiles(ideal, [0.05, 0.5, 0.95]),
    };
    const fmt = (q: number[]) => q.map((v) => v.toFixed(3)).join(" / ");
    console.info(
      [
        "S = 16, 4000 pairs, seed 0: p5 / p50 / p95 (ours | reference)",
        `  winners ${fmt(ours.winners)} | ${fmt(REFERENCE.winners)}`,
        `  losers  ${fmt(ours.losers)} | ${fmt(REFERENCE.losers)}`,
        `  ideal   ${fmt(ours.ideal)} | ${fmt(REFERENCE.ideal)}`,
      ].join("\n"),
    );
    expect(ours.winners[2] - ours.winners[0]).toBeGreaterThanOrEqual(0.2);
    for (const k of ["winners", "losers", "ideal"] as const) {
      for (let q = 0; q < 3; q++) expect(Math.abs(ours[k][q] - REFERENCE[k][q])).toBeLessThan(0.05);
    }
  });
});
