/**
 * `idpo bench paper` end to end on a micro configuration: every stage (base, improver, SFT, offline DPO,
 * SPIN, ours from base and from SPIN, the pair-size runs, the tuning variants, every evaluation) through
 * the in-process mesh, the report and its figures, and a second invocation that finds every stage done.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type PaperConfig, paperConfig, runBenchPaper } from "@idpo/bench-paper";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

/** The quick configuration shrunk to a few steps everywhere (the pipeline, not the numbers, is tested). */
function microConfig(): PaperConfig {
  const cfg = paperConfig("quick");
  const stage = { steps: 2, batchSize: 4, learningRate: 1e-3, warmupSteps: 0 };
  return {
    ...cfg,
    offlinePairs: 32,
    base: { ...stage, batchSize: 8, emaDecay: 0.9 },
    improver: { ...cfg.improver, ...stage },
    sft: stage,
    dpo: { ...stage, learningRate: 2e-5, beta: 1000 },
    spin: { ...stage, learningRate: 2e-5, beta: 1000, iterations: 2 },
    ours: {
      ...stage,
      learningRate: 2e-5,
      beta: 1000,
      iterations: 2,
      pairsPerIteration: 4,
      shardSize: 4,
      pairSizes: [2, 4, 6],
    },
    sampling: { ...cfg.sampling, steps: 2 },
    eval: {
      trainPrompts: 1,
      testPrompts: 1,
      samplesPerPrompt: 4,
      validationPrompts: 1,
      validationSamplesPerPrompt: 2,
    },
    tuning: {
      ...cfg.tuning,
      iterations: 1,
      variants: [
        { key: "pairs-6", label: "more online pairs", pairs: 6 },
        { key: "offline", label: "offline pairs mixed in", offlinePairs: 4 },
        { key: "sdedit", label: "SDEdit winners", improveStrength: 0.6 },
        { key: "rpo", label: "RPO likelihood term", sftWeight: 1 },
        { key: "sft", label: "SFT on improved winners", sftOnWinners: true },
        { key: "early-stop", label: "early stopping", earlyStop: true },
      ],
      sftSteps: 1,
      earlyStopCheckpoints: 1,
    },
  };
}

describe("idpo bench paper (micro configuration)", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-bench-paper-"));
  const out = join(dir, "docs");
  const dataDir = join(dir, "data");
  let first = "";
  let second = "";
  let third = "";

  beforeAll(async () => {
    const opts = { config: "quick" as const, seeds: [3], out, dataDir, command: "idpo bench paper --quick" };
    await runBenchPaper({ ...opts, override: microConfig() }, (s) => (first += s));
    await runBenchPaper({ ...opts, override: microConfig(), dashboardPort: 0 }, (s) => (second += s));
    const more = microConfig();
    more.tuning.variants.push({ key: "dpop", label: "DPO-Positive", dpoPositiveLambda: 5 });
    await runBenchPaper({ ...opts, override: more }, (s) => (third += s));
  }, 600_000);

  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("runs every stage through the services and writes the report with its figures", () => {
    for (const stage of [
      "base",
      "improver",
      "sft",
      "dpo",
      "spin",
      "ours",
      "ours-spin",
      "pairs-2",
      "pairs-6",
    ]) {
      expect(first, stage).toContain(`stage ${stage}: started`);
    }
    const md = readFileSync(join(out, "RESULTS-quick.md"), "utf8");
    for (const h of ["## Claims", "## Table 1 analogue", "## Table 2 analogue", "## Table 3 analogue"]) {
      expect(md).toContain(h);
    }
    // Every stage ran in this invocation, so one engines line, recorded by the stages themselves.
    expect(md).toMatch(
      /^- Engines: sampling \(Generator, Improver, SPIN's losers\): .+; training \(Trainer\): tfjs /m,
    );
    expect(md).not.toContain("Engines of ");
    expect(md).toContain("## What makes the iterative method work");
    expect(md).toContain("### What made it work");
    expect(md).toMatch(
      /## The base model's learning curve[\s\S]*\| 1 \| 0\.\d{3} ± 0\.\d{3} \|\n\| 2 \| 0\.\d{3}/,
    );
    expect(md).toContain("| SDEdit winners |");
    expect(md).toMatch(/\| Improver on base samples, SDEdit 0\.6 \(one shot\) \| 0\.\d{3}/);
    expect(md).toMatch(/Reference points on the same oracle: the offline dataset's winners score 0\.\d{3}/);
    expect(md).toMatch(/\| Ours from SPIN, iter 2 \| 0\.\d{3} ± 0\.\d{3} \|/);
    for (const f of [
      "reward-per-iteration.png",
      "compare.png",
      "samples-base.png",
      "samples-improver-fix-sdedit.png",
      "results.json",
    ]) {
      expect(existsSync(join(out, "results", "quick", f)), f).toBe(true);
    }
  });

  it("resumes: a second invocation finds every stage finished and trains nothing", () => {
    expect(second).toMatch(/resuming: \d+ stages already finished/);
    expect(second).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\//);
    expect(second.split("\n").filter((l) => l.includes("started"))).toEqual([]);
    expect(existsSync(join(out, "RESULTS-quick.md"))).toBe(true);
  });

  it("keys stages by their own inputs: a new variant runs alone, every finished stage is kept", () => {
    expect(third).toContain("stage tune/dpop: started");
    for (const stage of ["base", "improver", "sft", "dpo", "spin", "ours", "eval:sft", "tune/sdedit"]) {
      expect(third, stage).not.toContain(`stage ${stage}: started`);
    }
    expect(readFileSync(join(out, "RESULTS-quick.md"), "utf8")).toContain("DPO-Positive (λ 5)");
  });
});
