import { describe, expect, it } from "vitest";
import { checkClaims } from "./claims.js";
import { paperConfig } from "./config.js";
import { loadLine, type RunInfo, renderReport } from "./report.js";
import type { ModelEval, PaperResults, SetEval } from "./results.js";
import { pairedDelta, summariseRewards } from "./results.js";
import {
  fmtDelta,
  fmtPercent,
  markdownTable,
  methodTable,
  pairSizeTable,
  remedyTable,
  tuningTable,
} from "./tables.js";

function set(rewards: number[], base?: number[], vendi = 2): SetEval {
  return { ...summariseRewards(rewards, base), vendi, components: {}, rewards };
}

function model(
  key: string,
  label: string,
  train: number[],
  test: number[],
  base?: ModelEval,
  vendi = 2,
): ModelEval {
  return {
    key,
    label,
    checkpointId: `ckpt/${key}`,
    train: set(train, base?.train.rewards, vendi),
    test: set(test, base?.test.rewards, vendi),
  };
}

/** A small world where ours-from-SPIN > SPIN > DPO > base by exactly 0.1 per image on both splits. */
function fixture(): PaperResults {
  const b = [0.5, 0.6, 0.7, 0.8];
  const add = (d: number) => b.map((v) => v + d);
  const base = model("base", "Base", b, b);
  const models: Record<string, ModelEval> = {
    base,
    dpo: model("dpo", "DPO", add(0.1), add(0.1), base),
    "spin/iter-1": model("spin/iter-1", "SPIN 1", add(0.2), add(0.2), base, 1.5),
    "ours-spin/iter-1": model("ours-spin/iter-1", "Ours 1", add(0.3), add(0.3), base, 1.8),
    "improver-fix": model("improver-fix", "Fix", add(0.25), add(0.15), base),
    "pairs-8/iter-1": model("pairs-8/iter-1", "p8", add(0.05), add(0.05), base),
    "pairs-16/iter-1": model("pairs-16/iter-1", "p16", add(0.02), add(0.02), base),
  };
  return {
    models,
    mainRows: ["base", "dpo", "spin/iter-1", "ours-spin/iter-1"],
    series: [
      { label: "SPIN", keys: ["base", "spin/iter-1"], firstIteration: 0 },
      { label: "Ours from SPIN", keys: ["spin/iter-1", "ours-spin/iter-1"], firstIteration: 1 },
    ],
    pairSizes: [
      { pairs: 8, keys: ["pairs-8/iter-1"] },
      { pairs: 16, keys: ["pairs-16/iter-1"] },
    ],
    trainMetrics: { "SPIN iter 1": { loss: 0.5, implicit_acc: 0.9, raw_model_loss: 0.2, ref_loss: 0.1 } },
  };
}

/** The fixture with a search whose chosen variant is `tuned`, `d` above the base on test (0.2 on train). */
function withTuning(r: PaperResults, d: number): PaperResults {
  const b = [0.5, 0.6, 0.7, 0.8];
  const base = r.models.base;
  r.models.tuned = model(
    "tuned",
    "Ours, tuned",
    b.map((v) => v + 0.15),
    b.map((v) => v + d),
    base,
  );
  r.models["tune/rpo"] = { ...r.models.tuned, key: "tune/rpo" };
  r.tuning = {
    variants: [
      {
        key: "rpo",
        label: "RPO",
        change: "RPO likelihood term (α 1)",
        validation: [0.7, 0.75],
        validationCi: [0.01, 0.01],
        validationVendi: [2, 2],
        trainMetrics: [],
        checkpoints: ["ckpt/tuned"],
        modelKey: "tune/rpo",
      },
    ],
    chosen: "rpo",
    reason: "best",
    modelKey: "tuned",
  };
  return r;
}

describe("markdown tables", () => {
  it("renders aligned columns and escapes pipes", () => {
    expect(markdownTable(["a", "b"], [["x|y", "1"]], ["left", "right"])).toBe(
      "| a | b |\n| --- | ---: |\n| x\\|y | 1 |",
    );
  });

  it("refuses ragged rows", () => {
    expect(() => markdownTable(["a", "b"], [["x"]])).toThrow(/row 0 has 1 cells, expected 2/);
  });

  it("formats deltas and percentages", () => {
    expect(fmtDelta(0.0123)).toBe("+0.012");
    expect(fmtDelta(-0.5)).toBe("−0.500");
    expect(fmtDelta(0.0001)).toBe("±0.000");
    expect(fmtPercent(0.573, 0.041)).toBe("57.3 ± 4.1 %");
    expect(fmtPercent(undefined)).toBe("—");
  });

  it("method table: paired Δ and win-rate against the base, by hand", () => {
    const r = fixture();
    const t = methodTable(r, "test").split("\n");
    expect(t[0]).toBe("| method | reward (95 % CI) | Δ vs base (paired) | win-rate vs base | Vendi |");
    // Base: mean 0.65, sd 0.1291, t(0.975, 3) = 3.1824 → half-width 0.2054.
    expect(t[2]).toBe("| Base | 0.650 ± 0.205 | — | — | 2.00 |");
    // DPO: every image +0.1 → Δ exactly 0.1 with zero spread, wins 4/4.
    expect(t[3]).toBe("| DPO | 0.750 ± 0.205 | +0.100 ± 0.000 | 100.0 ± 0.0 % | 2.00 |");
  });

  it("pair-size table lists the final iterate per size", () => {
    const t = pairSizeTable(fixture()).split("\n");
    expect(t[2].startsWith("| 8 | 0.700 ± 0.205 | 0.700 ± 0.205 | 100.0 % |")).toBe(true);
    expect(t[3]).toContain("0.650 → 0.670");
  });

  it("tuning table marks the chosen variant and the best gain", () => {
    const r = fixture();
    r.tuning = {
      variants: [
        {
          key: "faithful",
          label: "faithful",
          change: "none",
          validation: [0.5, 0.4],
          validationCi: [0.01, 0.01],
          validationVendi: [2, 1.5],
          trainMetrics: [{ implicit_acc: 0.97, raw_model_loss: 0.1125, ref_loss: 0.1 }],
          checkpoints: ["a"],
        },
        {
          key: "early-stop",
          label: "early stopping",
          change: "keep best",
          validation: [0.5, 0.55],
          validationCi: [0.01, 0.02],
          validationVendi: [2, 2.1],
          trainMetrics: [],
          checkpoints: ["b"],
        },
      ],
      chosen: "early-stop",
      reason: "best",
      modelKey: "dpo",
    };
    const t = tuningTable(r).split("\n");
    expect(t[2]).toBe("| faithful | none | 0.500 ± 0.010 | 0.400 ± 0.010 | −0.100 | 1.50 | 0.97 | +0.0125 |");
    expect(t[3]).toBe(
      "| **early stopping** (chosen) | keep best | 0.500 ± 0.010 | 0.550 ± 0.020 | +0.050 | 2.10 | — | — |",
    );
  });
});

describe("remedy table", () => {
  it("puts each variant's validation figures beside its test reward, paired Δ, win-rate and Vendi ratio", () => {
    const rows = remedyTable(withTuning(fixture(), 0.15)).split("\n");
    expect(rows[0]).toBe(
      "| variant | change | validation (last) | Δ validation | test reward | Δ test vs base (paired) | test win-rate | Vendi / base's |",
    );
    expect(rows[2]).toBe(
      "| **RPO** (chosen) | RPO likelihood term (α 1) | 0.750 ± 0.010 | +0.050 | 0.800 ± 0.205 | +0.150 ± 0.000 | 100.0 ± 0.0 % | 1.00 |",
    );
  });
});

describe("claims", () => {
  it("holds the ordering when every paired difference is positive beyond the noise", () => {
    const c = checkClaims(fixture());
    expect(c[0].claim).toContain("ours > SPIN > Diffusion-DPO > base");
    expect(c[0].verdict).toBe("held");
    expect(c[0].evidence).toContain("ours (from SPIN) − SPIN = +0.100 ± 0.000");
    expect(c[1].verdict).toBe("held");
    // Fewer pairs did better here: the pair-count claim fails on both splits.
    expect(c[2].verdict).toBe("did not hold");
  });

  it("reports a reversed ordering as not holding", () => {
    const r = fixture();
    const swap = r.models["spin/iter-1"];
    r.models["spin/iter-1"] = { ...r.models["ours-spin/iter-1"], key: "spin/iter-1" };
    r.models["ours-spin/iter-1"] = { ...swap, key: "ours-spin/iter-1" };
    expect(checkClaims(r)[0].verdict).toBe("did not hold");
  });

  it("checks that each baseline improves the base on test prompts beyond the noise", () => {
    const c = checkClaims(fixture()).find((x) => x.claim.startsWith("the baselines"));
    expect(c?.verdict).toBe("held");
    expect(c?.evidence).toBe(
      "test, paired vs base: offline Diffusion-DPO +0.100 ± 0.000; improver one-shot +0.150 ± 0.000",
    );
    const r = fixture();
    r.models.sft = model("sft", "SFT", [0.5, 0.6, 0.7, 0.8], [0.4, 0.6, 0.7, 0.9], r.models.base);
    expect(checkClaims(r).find((x) => x.claim.startsWith("the baselines"))?.verdict).toBe("mixed");
  });

  it("compares the tuned policy with the improver one-shot, a miss only beyond the noise", () => {
    const r = withTuning(fixture(), 0.15);
    const claim = (x: PaperResults) => checkClaims(x).find((c) => c.claim.startsWith("the iterated policy"));
    expect(claim(r)?.verdict).toBe("held");
    expect(claim(r)?.evidence).toBe("tuned − improver one-shot: test ±0.000 ± 0.000, train −0.100 ± 0.000");
    expect(claim(withTuning(fixture(), 0.1))?.verdict).toBe("did not hold");
    const noisy = withTuning(fixture(), 0.15);
    noisy.models.tuned.test = set([0.6, 0.8, 0.8, 0.95], r.models.base.test.rewards);
    expect(claim(noisy)?.verdict).toBe("mixed");
  });

  it("paired delta is the mean difference with a t interval", () => {
    const d = pairedDelta([1, 2, 3], [0, 0, 0]);
    expect(d.mean).toBe(2);
    // sd 1, t(0.975, 2) = 4.3027 → 4.3027/√3.
    expect(d.ci).toBeCloseTo(4.302653 / Math.sqrt(3), 4);
  });
});

/** Provenance of a report, as run-paper.ts fills it in. */
function runInfo(over: Partial<RunInfo>): RunInfo {
  return {
    command: "idpo bench paper",
    seed: 1,
    backend: "wasm",
    machine: "2 × test CPU",
    load: { start: 1, end: 2 },
    date: "2026-01-01T00:00:00Z",
    stageSeconds: [{ stage: "base", seconds: 61 }],
    invocationSeconds: 70,
    figures: { rewardPlot: "p.png", compare: "c.png", grids: [] },
    sets: [{ name: "test", prompts: ["p"], samplesPerPrompt: 16, seed: 5 }],
    ...over,
  };
}

describe("report", () => {
  it("labels the quick configuration and includes every section", () => {
    const info = runInfo({
      command: "idpo bench paper --quick",
      figures: {
        rewardPlot: "results/quick/plot.png",
        compare: "results/quick/compare.png",
        grids: [{ label: "Base", file: "results/quick/samples-base.png" }],
      },
    });
    const md = renderReport(paperConfig("quick"), fixture(), info);
    expect(md).toContain("This is the `--quick` configuration");
    for (const h of [
      "## Claims",
      "## Table 1 analogue",
      "## Table 4 analogue",
      "## Table 3 analogue",
      "## Table 2 analogue",
      "## Reward per iteration",
      "## Stage wall times",
    ]) {
      expect(md).toContain(h);
    }
    expect(md).toContain("![reward per iteration](results/quick/plot.png)");
    expect(md).toContain("| base | 1m 01s |");
  });
});

describe("report with reference points and a second seed", () => {
  const info = runInfo({
    reference: {
      winners: { n: 4, mean: 0.85, p25: 0.8, p50: 0.86, p75: 0.9 },
      losers: { n: 4, mean: 0.72, p25: 0.7, p50: 0.73, p75: 0.8 },
      idealTrain: { n: 1, mean: 0.95, p25: 0.95, p50: 0.95, p75: 0.95 },
      idealTest: { n: 1, mean: 0.96, p25: 0.96, p50: 0.96, p75: 0.96 },
    },
  });

  it("places the base model on the data's scale and states the reference points", () => {
    // The fixture's base has test mean 0.65: below the losers' lower quartile (0.70).
    const md = renderReport(paperConfig("default"), fixture(), info);
    expect(md).toContain(
      "The base model's test samples score 0.650, below the lower quartile of even the offline losers",
    );
    expect(md).toContain(
      "the offline dataset's winners score 0.850 (median 0.860, quartiles 0.800–0.900), its losers 0.720",
    );
    expect(md).toContain("ideal renders of the evaluated prompts score 0.950 (train) and 0.960 (test)");
    expect(md).not.toContain("## Seed noise");
  });

  it("checks every claim on every seed", () => {
    const reversed = fixture();
    // Seed 2: SPIN below DPO on every image, so the ordering claim fails there.
    reversed.models["spin/iter-1"] = model(
      "spin/iter-1",
      "SPIN 1",
      [0.55, 0.65, 0.75, 0.85],
      [0.55, 0.65, 0.75, 0.85],
      reversed.models.base,
    );
    const md = renderReport(paperConfig("default"), fixture(), info, [
      { seed: 1, results: fixture() },
      { seed: 2, results: reversed },
    ]);
    expect(md).toContain("## Seed noise");
    const table = md.split("The claims' verdicts, checked on each seed alone:")[1];
    expect(table).toContain("| claim | seed 1 | seed 2 |");
    expect(table).toMatch(/\| ours > SPIN > Diffusion-DPO > base on reward \| held +\| did not hold \|/);
  });

  it("lists the improver one-shot and each seed's own chosen variant", () => {
    const one = withTuning(fixture(), 0.1);
    const two = withTuning(fixture(), 0.05);
    two.tuning!.chosen = "sft";
    const md = renderReport(paperConfig("default"), one, info, [
      { seed: 1, results: one },
      { seed: 2, results: two },
    ]);
    const table = md.split("## Seed noise")[1].split("The claims' verdicts")[0];
    expect(table).toMatch(/\| Fix \| 0\.800 \| 0\.800 \| 0\.000 \|/);
    expect(table).toMatch(/\| Ours, tuned \(seed 1: rpo, seed 2: sft\) \| 0\.750 \| 0\.700 \| 0\.050 \|/);
  });
});

describe("load line", () => {
  it("weights each stage's load by its wall time", () => {
    const line = loadLine({
      load: { start: 9, end: 9 },
      stageSeconds: [
        { stage: "a", seconds: 30, load: 2 },
        { stage: "b", seconds: 10, load: 6 },
        { stage: "c", seconds: 5 },
      ],
    });
    expect(line).toContain("3.0 time-weighted mean, 2.0–6.0 range");
  });

  it("falls back to the invocation's load when no stage recorded one", () => {
    expect(loadLine({ load: { start: 1, end: 2.5 }, stageSeconds: [{ stage: "a", seconds: 3 }] })).toContain(
      "started / ended: 1.0 / 2.5",
    );
  });
});
