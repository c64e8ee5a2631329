import { create } from "@bufbuild/protobuf";
import { RunConfigSchema } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { deriveSeed, iterationData, planShards, shardArtifact } from "./run-plan.js";

const prompts = ["a", "b", "c"];
const config = create(RunConfigSchema, {
  pairsPerIteration: 10,
  shardSize: 4,
  seed: 5n,
  samplingSteps: 20,
  guidanceScale: 3,
  textGuidanceScale: 3.5,
  imageGuidanceScale: 3,
});
const ckpts = { policy: "runs/r/base", improver: "runs/r/improver" };

describe("planShards", () => {
  it("splits an iteration's pairs into shards named by their artifact, last one short", () => {
    const tasks = planShards("r", config, prompts, 1, ckpts);
    expect(tasks.map((t) => t.prompts.length)).toEqual([4, 4, 2]);
    expect(tasks.map((t) => t.shardIndex)).toEqual([0, 1, 2]);
    expect(tasks.every((t) => t.shardCount === 3)).toBe(true);
    expect(tasks.map((t) => t.outputArtifact)).toEqual([0, 1, 2].map((i) => shardArtifact("r", 1, i)));
    expect(tasks[0].outputArtifact).toBe("runs/r/iter-1/shard-0.pairs");
    expect(tasks.every((t) => t.seeds.length === t.prompts.length)).toBe(true);
    expect(tasks[0].policyCheckpointId).toBe("runs/r/base");
    expect(tasks[0].textGuidanceScale).toBe(3.5);
    // Unset in the config (validateRunConfig fills in 1): unset in the task, which the generator reads as 1.
    expect(tasks.every((t) => t.improveStrength === undefined)).toBe(true);
    const sdedit = planShards("r", { ...config, improveStrength: 0.6 }, prompts, 1, ckpts);
    expect(sdedit.every((t) => Math.abs((t.improveStrength ?? 0) - 0.6) < 1e-6)).toBe(true);
  });

  it("covers every prompt once per pass and is deterministic in (seed, iteration)", () => {
    const all = planShards("r", config, prompts, 1, ckpts).flatMap((t) => t.prompts);
    for (let pass = 0; pass < 3; pass++) {
      expect([...all.slice(pass * 3, pass * 3 + 3)].sort()).toEqual(prompts);
    }
    const again = planShards("r", config, prompts, 1, ckpts);
    expect(again.flatMap((t) => t.seeds)).toEqual(
      planShards("r", config, prompts, 1, ckpts).flatMap((t) => t.seeds),
    );
    const k2 = planShards("r", config, prompts, 2, ckpts).flatMap((t) => t.seeds);
    expect(k2).not.toEqual(again.flatMap((t) => t.seeds));
    const otherSeed = planShards("r", { ...config, seed: 6n }, prompts, 1, ckpts).flatMap((t) => t.seeds);
    expect(otherSeed).not.toEqual(again.flatMap((t) => t.seeds));
  });

  it("derives distinct 32-bit seeds per purpose", () => {
    const a = deriveSeed(1n, "eval");
    expect(a).toBe(deriveSeed(1n, "eval"));
    expect(a).not.toBe(deriveSeed(1n, "pairs", 1));
    expect(a).not.toBe(deriveSeed(2n, "eval"));
    expect(Number.isInteger(a) && a >= 0 && a < 2 ** 32).toBe(true);
  });
});

describe("iterationData", () => {
  const dataset = "shapes://?pairs=1000&size=16&seed=3";
  it("is the iteration's online shards alone by default (the paper's method)", () => {
    expect(iterationData(create(RunConfigSchema, { dataset }), "r", 2)).toEqual([
      "artifact://runs/r/iter-2/",
    ]);
  });

  it("adds a window of the offline dataset with offline_pairs_per_iteration, drawn per seed and iteration", () => {
    const cfg = create(RunConfigSchema, { dataset, offlinePairsPerIteration: 384, seed: 7n });
    const data = iterationData(cfg, "r", 1);
    expect(data[0]).toBe("artifact://runs/r/iter-1/");
    expect(data[1]).toBe(`${dataset}#skip=${deriveSeed(7n, "offline-window", 1)}&take=384`);
    expect(iterationData(cfg, "r", 1)).toEqual(data);
    expect(iterationData(cfg, "r", 2)[1]).not.toBe(data[1]);
    expect(iterationData({ ...cfg, seed: 8n }, "r", 1)[1]).not.toBe(data[1]);
  });
});
