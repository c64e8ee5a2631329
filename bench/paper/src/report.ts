import { PRETRAINED_BASE_SEED } from "@idpo/mesh";
import { checkClaims } from "./claims.js";
import type { PaperConfig } from "./config.js";
import type { DataReference, RewardSummary } from "./data-reference.js";
import { FIX_KEY } from "./evaluate.js";
import { type ModelEval, type PaperResults, pairedDelta } from "./results.js";
import { formatDuration } from "./stage-runner.js";
import {
  fixerTable,
  fmtDelta,
  fmtReward,
  iterationTable,
  markdownTable,
  methodTable,
  pairSizeTable,
  remedyTable,
  trainMetricsTable,
  tuningTable,
} from "./tables.js";

/** Where and how a benchmark ran (the report's provenance section). */
export interface RunInfo {
  /** The exact command line. */
  command: string;
  /** Master seed of the main results. */
  seed: number;
  /**
   * Which engines this invocation runs sampling and training on (e.g. "sampling …: sidecar …; training …:
   * tfjs wasm, …"); each stage's own engines are in stageSeconds.
   */
  backend: string;
  /** CPU model, core count, memory, OS, Node version. */
  machine: string;
  /** 1-minute load average when this invocation started and ended (the machine is shared). */
  load: { start: number; end: number };
  /** When the report was written. */
  date: string;
  /**
   * Wall seconds of every stage (its last successful attempt), the load average when it ended and the
   * engines that ran it (absent for stages run before they were kept), in order.
   */
  stageSeconds: { stage: string; seconds: number; load?: number; engines?: string }[];
  /** Wall seconds of this invocation (less than the total when earlier invocations did part of the work). */
  invocationSeconds: number;
  /** Figures, relative to the report's directory. */
  figures: {
    rewardPlot: string;
    /** The base model's learning curve, when one was measured. */
    curvePlot?: string;
    compare: string;
    grids: { label: string; file: string }[];
  };
  /** The prompt sets (names and sizes), for the setup section. */
  sets: { name: string; prompts: string[]; samplesPerPrompt: number; seed: number }[];
  /** The offline data's and the ideal renders' rewards, to place the models' rewards on the scale. */
  reference?: DataReference;
}

/** Other seeds' results of the same configuration, for the noise section. */
export interface SeedRun {
  seed: number;
  results: PaperResults;
}

function seedNoiseTable(runs: readonly SeedRun[]): string {
  const keys = runs[0].results.mainRows.filter((k) => runs.every((r) => r.results.models[k]));
  // The improver one-shot beside them: the row the tuned policy is measured against.
  if (!keys.includes(FIX_KEY) && runs.every((r) => r.results.models[FIX_KEY])) keys.push(FIX_KEY);
  const tuned = runs.every((r) => r.results.tuning && r.results.models[r.results.tuning.modelKey]);
  const rows: { label: string; model: (r: SeedRun) => ModelEval }[] = keys.map((k) => ({
    label: runs[0].results.models[k].label,
    model: (r) => r.results.models[k],
  }));
  if (tuned) {
    // Each seed chose its own variant on its validation prompts; the row names them.
    const chosen = runs.map((r) => `seed ${r.seed}: ${r.results.tuning!.chosen}`).join(", ");
    rows.push({
      label: `Ours, tuned (${chosen})`,
      model: (r) => r.results.models[r.results.tuning!.modelKey],
    });
    const deployed = (r: SeedRun) => {
      const key = r.results.tuning!.deployedKey;
      return key ? r.results.models[key] : undefined;
    };
    if (runs.every((r) => deployed(r))) {
      rows.push({ label: "Ours, tuned, then the improver once", model: (r) => deployed(r)! });
    }
  }
  const headers = ["method", ...runs.map((r) => `test reward, seed ${r.seed}`), "spread (max − min)"];
  const body = rows.map((row) => {
    const vals = runs.map((r) => row.model(r).test.reward);
    return [row.label, ...vals.map((v) => v.toFixed(3)), (Math.max(...vals) - Math.min(...vals)).toFixed(3)];
  });
  return markdownTable(headers, body, ["left", ...headers.slice(1).map(() => "right" as const)]);
}

/** The verdict of every claim on every seed: whether a verdict survives a change of seed. */
function seedClaimsTable(runs: readonly SeedRun[]): string {
  const perSeed = runs.map((r) => checkClaims(r.results));
  const claims = perSeed[0].map((c) => c.claim);
  const body = claims.map((claim) => [
    claim,
    ...perSeed.map((checks) => checks.find((c) => c.claim === claim)?.verdict ?? "-"),
  ]);
  return markdownTable(["claim", ...runs.map((r) => `seed ${r.seed}`)], body);
}

function fmtSummary(s: RewardSummary): string {
  return `${s.mean.toFixed(3)} (median ${s.p50.toFixed(3)}, quartiles ${s.p25.toFixed(3)}–${s.p75.toFixed(3)})`;
}

/** One paragraph placing the rewards on the scale of the data. */
function referenceLine(ref: DataReference): string {
  return (
    `Reference points on the same oracle: the offline dataset's winners score ${fmtSummary(ref.winners)}, ` +
    `its losers ${fmtSummary(ref.losers)}; the ideal renders of the evaluated prompts score ` +
    `${ref.idealTrain.mean.toFixed(3)} (train) and ${ref.idealTest.mean.toFixed(3)} (test).`
  );
}

function totalSeconds(info: RunInfo): number {
  return info.stageSeconds.reduce((a, s) => a + s.seconds, 0);
}

/**
 * The whole RESULTS.md: provenance, config, Tables 1–4 analogues, the reward-per-iteration plot, training
 * metrics, the search for what makes the method work, sample grids, seed noise, and the claims checked.
 */
export function renderReport(
  cfg: PaperConfig,
  results: PaperResults,
  info: RunInfo,
  seeds: readonly SeedRun[] = [],
): string {
  const L = [
    ...headerSection(cfg, info),
    ...setupSection(cfg, info, seeds),
    ...baseCurveSection(cfg, results, info),
    ...claimsSection(cfg, results, info),
    ...methodTablesSection(results, info),
    ...fixerSection(results),
    ...iterationSections(results, info),
    ...tuningSection(cfg, results),
    ...samplesSection(info),
    ...seedNoiseSection(cfg, seeds),
    ...throughputSection(cfg, info),
  ];
  return `${L.join("\n")}\n`;
}

/** The title, the quick configuration's warning, and where the numbers come from. */
function headerSection(cfg: PaperConfig, info: RunInfo): string[] {
  const L: string[] = [];
  L.push(`# idpo on the shapes world: the paper's claims, measured (config \`${cfg.name}\`)`);
  L.push("");
  if (cfg.name === "quick") {
    L.push(
      "> **This is the `--quick` configuration**: a ≤ 15-minute smoke test of the whole benchmark with tiny " +
        "budgets. Its numbers show that every stage runs end to end; they are too small to support or refute " +
        "the paper. Run `npm run bench:paper` (the default configuration) for the real tables.",
    );
    L.push("");
  }
  L.push(
    `Generated by \`${info.command}\` on ${info.date}. Every number below is computed by that command from ` +
      "the models it trained; nothing is typed in by hand.",
  );
  L.push("");
  return L;
}

/**
 * Which engines ran the stages, from each stage's record: one line when every stage ran on the same ones,
 * else one line per set of engines with the stages it ran; stages recorded before engines were kept are
 * counted apart, with this invocation's engines beside them (which they may not have run on).
 */
export function enginesLines(info: Pick<RunInfo, "backend" | "stageSeconds">): string[] {
  const groups = new Map<string, string[]>();
  const unknown: string[] = [];
  for (const s of info.stageSeconds) {
    if (s.engines === undefined) unknown.push(s.stage);
    else groups.set(s.engines, [...(groups.get(s.engines) ?? []), s.stage]);
  }
  if (unknown.length === 0 && groups.size <= 1) return [`Engines: ${[...groups.keys()][0] ?? info.backend}`];
  const names = (stages: string[]) =>
    stages.length <= 4 ? stages.join(", ") : `${stages.slice(0, 3).join(", ")} and ${stages.length - 3} more`;
  const lines = [...groups].map(
    ([engines, stages]) =>
      `Engines of ${stages.length} stage${stages.length === 1 ? "" : "s"} (${names(stages)}): ${engines}`,
  );
  if (unknown.length > 0)
    lines.push(
      `Engines of ${unknown.length} stage${unknown.length === 1 ? "" : "s"} (${names(unknown)}): not recorded (they ran before idpo kept each stage's engines); this invocation's: ${info.backend}`,
    );
  return lines;
}

/** Provenance (command, seed, engines, machine, load, wall time), the model and sets, and the configuration. */
function setupSection(cfg: PaperConfig, info: RunInfo, seeds: readonly SeedRun[]): string[] {
  const L: string[] = [];
  L.push("## Setup");
  L.push("");
  L.push(`- Command: \`${info.command}\``);
  L.push(
    `- Seed: ${info.seed}${seeds.length > 1 ? ` (seed noise: ${seeds.map((s) => s.seed).join(", ")}; see below)` : ""}`,
  );
  for (const line of enginesLines(info)) L.push(`- ${line}`);
  L.push(`- Machine: ${info.machine}`);
  L.push(`- ${loadLine(info)}`);
  L.push(
    `- Wall time: ${formatDuration(totalSeconds(info))} summed over stages; this invocation ${formatDuration(info.invocationSeconds)}`,
  );
  L.push(
    `- Model: preset \`${cfg.modelPreset}\` at ${cfg.imageSize}×${cfg.imageSize}; offline dataset ${cfg.offlinePairs} shapes-world pairs (train prompts only); sampling DDIM ${cfg.sampling.steps} steps, CFG ${cfg.sampling.guidanceScale}; improver s_T ${cfg.sampling.textGuidance}, s_I ${cfg.sampling.imageGuidance}.`,
  );
  for (const s of info.sets) {
    L.push(
      `- ${s.name} set: ${s.prompts.length} prompts × ${s.samplesPerPrompt} samples, seeds ${s.seed} + i·${s.samplesPerPrompt} + j (every model the same)`,
    );
  }
  L.push(
    "- All services ran in one process on loopback gRPC ports with the embedded bus; every model was trained by the Trainer, iterated methods were driven by the Controller, images came from the Generator and Improver (through the inference sidecar where the engines line says so), and every score from the Scorer.",
  );
  L.push(
    cfg.startFrom === "pretrained"
      ? "- Base and improvement model: the checkpoints idpo ships (`models/shapes16`, made by the `base` and `improver` recipes of the configuration below on the offline dataset named there; see `models/shapes16/MODEL_CARD.md`), shared by every seed. The oracle only scores: no training signal reads it, apart from the offline dataset's Bradley–Terry preference labels."
      : "- Base and improvement model: trained for this seed by the `base` and `improver` recipes of the configuration below. The oracle only scores: no training signal reads it, apart from the offline dataset's Bradley–Terry preference labels.",
  );
  L.push("");
  L.push("<details><summary>Configuration</summary>");
  L.push("");
  L.push("```json");
  L.push(JSON.stringify(cfg, null, 2));
  L.push("```");
  L.push("");
  L.push("</details>");
  L.push("");
  return L;
}

/** The base model's learning curve (absent when none was measured). */
function baseCurveSection(cfg: PaperConfig, results: PaperResults, info: RunInfo): string[] {
  const L: string[] = [];
  if (!results.baseCurve || results.baseCurve.length === 0) return L;
  L.push("## The base model's learning curve");
  L.push("");
  L.push(
    cfg.startFrom === "pretrained"
      ? `The \`base\` recipe of the configuration below, retrained on the shipped dataset with the seed that made the shipped base (seed ${PRETRAINED_BASE_SEED}${info.seed === PRETRAINED_BASE_SEED ? ", this run's" : `; measured by seed ${PRETRAINED_BASE_SEED}'s run, on its validation prompts, and shown here because every seed starts from that base`}), its checkpoints (EMA weights) measured on the validation prompts and sampled like every model here. What decided the recipe, the DDIM step above all, is in \`models/shapes16/MODEL_CARD.md\`.`
      : "Validation reward of the base job's checkpoints (EMA weights where the recipe keeps an EMA), sampled like every model here:",
  );
  L.push("");
  if (info.figures.curvePlot) {
    L.push(`![base learning curve](${info.figures.curvePlot})`);
    L.push("");
  }
  const ref = results.baseCurveReference;
  if (ref) {
    L.push(`The shipped base itself: ${fmtReward(ref.reward, ref.ci)} on the same validation prompts.`);
    L.push("");
  }
  L.push(
    markdownTable(
      ["step", "validation reward"],
      results.baseCurve.map((p) => [String(p.step), fmtReward(p.reward, p.ci)]),
      ["right", "right"],
    ),
  );
  L.push("");
  return L;
}

/** The claims with their verdicts, and the generated discussion. */
function claimsSection(cfg: PaperConfig, results: PaperResults, info: RunInfo): string[] {
  const L: string[] = [];
  L.push("## Claims");
  L.push("");
  const claims = checkClaims(results);
  L.push(
    markdownTable(
      ["claim", "verdict", "evidence (paired Δ ± 95 % CI)"],
      claims.map((c) => [c.claim, c.verdict, c.evidence]),
    ),
  );
  L.push("");
  L.push(discussion(cfg, results, info.reference));
  L.push("");
  return L;
}

/** Tables 1 and 4 (every method on the train and test prompts), their legend and the reference points. */
function methodTablesSection(results: PaperResults, info: RunInfo): string[] {
  const L: string[] = [];
  L.push("## Table 1 analogue: training prompts");
  L.push("");
  L.push(methodTable(results, "train", withTuned(results)));
  L.push("");
  L.push("## Table 4 analogue: held-out test prompts");
  L.push("");
  L.push(methodTable(results, "test", withTuned(results)));
  L.push("");
  L.push(
    "Reward: mean oracle reward with a 95 % Student-t interval over images. Δ vs base: mean paired difference " +
      "against the base model's image of the same prompt and seed. Win-rate: fraction of those pairs won (ties half). " +
      "Vendi: per prompt over its samples, averaged over prompts.",
  );
  if (info.reference) {
    L.push("");
    L.push(referenceLine(info.reference));
  }
  L.push("");
  return L;
}

/** Table 3: the improvement model as a one-shot fixer, beside the last iterates of ours. */
function fixerSection(results: PaperResults): string[] {
  const L: string[] = [];
  L.push("## Table 3 analogue: the improvement model as a one-shot fixer");
  L.push("");
  const fixRows = ["base", "improver-fix", "improver-fix-sdedit"];
  const spinS = results.series.find((s) => s.label === "Ours from SPIN");
  const baseS = results.series.find((s) => s.label === "Ours from base");
  if (baseS) fixRows.push(baseS.keys[baseS.keys.length - 1]);
  if (spinS) fixRows.push(spinS.keys[spinS.keys.length - 1]);
  L.push(
    fixerTable(
      results,
      fixRows.filter((k) => results.models[k]),
    ),
  );
  L.push("");
  return L;
}

/** Table 2 (online pairs per iteration), the reward per iteration, and the preference jobs' metrics. */
function iterationSections(results: PaperResults, info: RunInfo): string[] {
  const L: string[] = [];
  L.push("## Table 2 analogue: online pairs per iteration");
  L.push("");
  L.push(pairSizeTable(results));
  L.push("");
  L.push("## Reward per iteration");
  L.push("");
  L.push(`![reward per iteration](${info.figures.rewardPlot})`);
  L.push("");
  L.push("Train / test mean reward of each iterate:");
  L.push("");
  L.push(iterationTable(results));
  L.push("");
  L.push("## Training metrics of the preference jobs");
  L.push("");
  L.push(
    "Final-step values as the Trainer reports them (Diffusion-DPO's names): `raw_model_loss` and `ref_loss` are the " +
      "policy's and the reference's ε-MSE on the pair images; `implicit_acc` the fraction of pairs the policy ranks " +
      "correctly relative to the reference.",
  );
  L.push("");
  L.push(trainMetricsTable(results.trainMetrics));
  L.push("");
  return L;
}

/** The search for what makes the iterative method work (or a line saying it was disabled). */
function tuningSection(cfg: PaperConfig, results: PaperResults): string[] {
  const L: string[] = [];
  L.push("## What makes the iterative method work");
  L.push("");
  if (results.tuning) {
    L.push(
      "Each variant changes the settings in its change column of the faithful method and runs from the base; every number here is on the " +
        "validation prompts (training-split prompts disjoint from the evaluated ones), never on the test prompts." +
        (cfg.tuning.combine ? " The combination joins the changes that beat the faithful method there." : ""),
    );
    L.push("");
    L.push(tuningTable(results));
    L.push("");
    L.push(
      `Chosen: **${results.tuning.chosen}**, ${results.tuning.reason}. Its train and test figures are the "Ours, tuned" row of Tables 1 and 4.`,
    );
    L.push("");
    L.push("### What made it work");
    L.push("");
    L.push(
      "Each variant's last iterate, sampled alone (no improver at inference): its validation reward (what the " +
        "choice read), then, measured after the choice, its test reward with the paired difference against the " +
        "base (same prompts and seeds; 95 % CI), its win-rate against the base, and its diversity relative to " +
        "the base's (Vendi ratio, test prompts).",
    );
    L.push("");
    L.push(remedyTable(results));
  } else {
    L.push("_Disabled in this configuration._");
  }
  L.push("");
  return L;
}

/** The same-seed sample figures: every method side by side, then one grid per method. */
function samplesSection(info: RunInfo): string[] {
  const L: string[] = [];
  L.push("## Same-seed samples");
  L.push("");
  L.push(
    "Every model below was sampled with the same seeds. One row per method, the first sample of several test and train prompts:",
  );
  L.push("");
  L.push(`![methods side by side](${info.figures.compare})`);
  L.push("");
  L.push(
    "Per method (rows: the first train prompts, then the first test prompts; columns: the first samples):",
  );
  L.push("");
  for (const g of info.figures.grids) {
    L.push(`- ${g.label}: ![${g.label}](${g.file})`);
  }
  L.push("");
  return L;
}

/** Every seed's test rewards and claims' verdicts (absent with a single seed). */
function seedNoiseSection(cfg: PaperConfig, seeds: readonly SeedRun[]): string[] {
  const L: string[] = [];
  if (seeds.length <= 1) return L;
  L.push("## Seed noise");
  L.push("");
  L.push(
    `The same configuration with seeds ${seeds.map((s) => s.seed).join(" and ")} (${
      cfg.startFrom === "pretrained"
        ? "the same shipped base, improver and offline data; different online pairs, training randomness and evaluation seeds"
        : "different data, initialisation, pairs and evaluation seeds"
    }):`,
  );
  L.push("");
  L.push(seedNoiseTable(seeds));
  L.push("");
  L.push("The claims' verdicts, checked on each seed alone:");
  L.push("");
  L.push(seedClaimsTable(seeds));
  L.push("");
  return L;
}

/** The main stages' throughput, then every stage's wall time. */
function throughputSection(cfg: PaperConfig, info: RunInfo): string[] {
  const L: string[] = [];
  L.push("## Measured throughput");
  L.push("");
  L.push(
    "From this run's stage wall times (everything through the services, including checkpoint writes, data " +
      "loading and gRPC); the load average above says how much of the 2 cores the benchmark had.",
  );
  L.push("");
  L.push(throughputTable(cfg, info));
  L.push("");
  L.push("## Stage wall times");
  L.push("");
  L.push("<details><summary>Every stage (its last successful attempt)</summary>");
  L.push("");
  L.push(
    markdownTable(
      ["stage", "wall time"],
      info.stageSeconds.map((s) => [s.stage, formatDuration(s.seconds)]),
      ["left", "right"],
    ),
  );
  L.push("");
  L.push("</details>");
  L.push("");
  return L;
}

function withTuned(results: PaperResults): string[] {
  const rows = [...results.mainRows];
  if (results.tuning && results.models[results.tuning.modelKey]) rows.push(results.tuning.modelKey);
  const deployed = results.tuning?.deployedKey;
  if (deployed && results.models[deployed]) rows.push(deployed);
  return rows;
}

/** Generated discussion: what the training metrics and the tables say about why the methods moved as they did. */
export function discussion(cfg: PaperConfig, results: PaperResults, reference?: DataReference): string {
  const P: string[] = [];
  const m = results.models;
  if (reference && m.base) {
    const base = m.base.test.reward;
    const where =
      base < reference.losers.p25
        ? "below the lower quartile of even the offline losers"
        : base < reference.losers.p50
          ? "below the median offline loser"
          : base < reference.winners.p50
            ? "between the median offline loser and the median winner"
            : "above the median offline winner";
    P.push(
      `The base model's test samples score ${base.toFixed(3)}, ${where} (losers' median ${reference.losers.p50.toFixed(3)}, ` +
        `winners' ${reference.winners.p50.toFixed(3)}, ideal renders ${reference.idealTest.mean.toFixed(3)})` +
        (base < reference.losers.p25
          ? ": every method here starts from a model whose own images are far from the data it was trained on, " +
            "unlike the paper's SD 1.5, whose samples are already in the range of Pick-a-Pic's images."
          : base < reference.losers.p50
            ? ": inside the range of the data it was trained on (losers' quartiles " +
              `${reference.losers.p25.toFixed(3)}–${reference.losers.p75.toFixed(3)}), as the paper's SD 1.5 is in Pick-a-Pic's, but in its lower half.`
            : "."),
    );
  }
  if (m["improver-fix"] && m.base) {
    const t = pairedDelta(m["improver-fix"].test.rewards, m.base.test.rewards);
    P.push(
      `The improvement model applied once to the base model's samples changes their test reward by ${fmtDelta(t.mean)} ± ${t.ci.toFixed(3)} ` +
        "(the independent reference run found ≈ +0.08 with a 613k-parameter UNet).",
    );
    const sd = m["improver-fix-sdedit"];
    if (sd) {
      const d = pairedDelta(sd.test.rewards, m.base.test.rewards);
      P.push(
        `Started from the base sample noised to ${cfg.sampling.sdeditStrength} of the schedule (SDEdit) instead of from pure noise, it changes them by ${fmtDelta(d.mean)} ± ${d.ci.toFixed(3)}.`,
      );
    }
  }
  const pref = Object.entries(results.trainMetrics).filter(
    ([, v]) => v.raw_model_loss !== undefined && v.ref_loss !== undefined,
  );
  if (pref.length > 0) {
    const rising = pref.filter(([, v]) => v.raw_model_loss > v.ref_loss);
    const acc = pref.map(([, v]) => v.implicit_acc).filter((v) => v !== undefined && Number.isFinite(v));
    const accText =
      acc.length > 0
        ? ` (final implicit accuracy ${Math.min(...acc).toFixed(2)}–${Math.max(...acc).toFixed(2)})`
        : "";
    P.push(
      `In ${rising.length} of ${pref.length} preference jobs${accText} the policy's final ε-MSE on the pair images (raw_model_loss) ended above the reference's (ref_loss)` +
        (rising.length * 2 > pref.length
          ? ": mostly, DPO widened the winner–loser margin by raising the loss on both images, the failure mode the reference run reported."
          : ": mostly, the policy's likelihood of the pair images did not fall below the reference's, unlike in the reference run."),
    );
  }
  if (results.tuning && m[results.tuning.modelKey] && m.base) {
    const tuned = m[results.tuning.modelKey];
    const d = pairedDelta(tuned.test.rewards, m.base.test.rewards);
    P.push(
      `The variant chosen on validation prompts (${results.tuning.chosen}) reaches ${fmtReward(tuned.test.reward, tuned.test.ci)} on the test prompts, ` +
        `${fmtDelta(d.mean)} ± ${d.ci.toFixed(3)} against the base.`,
    );
    const deployed = results.tuning.deployedKey ? m[results.tuning.deployedKey] : undefined;
    if (deployed) {
      const dd = pairedDelta(deployed.test.rewards, m.base.test.rewards);
      P.push(
        `Its samples improved once by the improver, what a user of both models deploys, reach ${fmtReward(deployed.test.reward, deployed.test.ci)}, ` +
          `${fmtDelta(dd.mean)} ± ${dd.ci.toFixed(3)} against the base.`,
      );
    }
  }
  if (cfg.name === "quick")
    P.push("All of this is at the quick configuration's budgets and says little about the method.");
  return P.join(" ");
}

/** Throughput of the main stages, from their wall times and the configured work. */
export function throughputTable(cfg: PaperConfig, info: Pick<RunInfo, "stageSeconds" | "sets">): string {
  const sec = new Map(info.stageSeconds.map((s) => [s.stage, s.seconds]));
  const rows: string[][] = [];
  const add = (stage: string, what: string, units: number, unit: string) => {
    const s = sec.get(stage);
    if (s === undefined || s <= 0) return;
    rows.push([stage, what, formatDuration(s), `${(units / s).toFixed(1)} ${unit}/s`]);
  };
  add(
    "base",
    `PRETRAIN ${cfg.base.steps} steps × ${cfg.base.batchSize} images`,
    cfg.base.steps * cfg.base.batchSize,
    "images",
  );
  add(
    "improver",
    `IMPROVER ${cfg.improver.steps} steps × ${cfg.improver.batchSize} pairs`,
    cfg.improver.steps * cfg.improver.batchSize,
    "pairs",
  );
  add(
    "sft",
    `SFT ${cfg.sft.steps} steps × ${cfg.sft.batchSize} images`,
    cfg.sft.steps * cfg.sft.batchSize,
    "images",
  );
  add(
    "dpo",
    `DPO ${cfg.dpo.steps} steps × ${cfg.dpo.batchSize} pairs`,
    cfg.dpo.steps * cfg.dpo.batchSize,
    "pairs",
  );
  add(
    "spin",
    `SPIN ${cfg.spin.iterations} × ${cfg.spin.steps} steps × ${cfg.spin.batchSize} pairs (losers sampled on the fly)`,
    cfg.spin.iterations * cfg.spin.steps * cfg.spin.batchSize,
    "pairs",
  );
  add(
    "ours",
    `ours ${cfg.ours.iterations} × (${cfg.ours.pairsPerIteration} online pairs + ${cfg.ours.steps} steps × ${cfg.ours.batchSize} pairs)`,
    cfg.ours.iterations * cfg.ours.pairsPerIteration,
    "online pairs",
  );
  const evalImages = info.sets
    .filter((s) => s.name !== "validation")
    .reduce((a, s) => a + s.prompts.length * s.samplesPerPrompt, 0);
  add("eval:sft", `sample and score ${evalImages} images`, evalImages, "images");
  if (rows.length === 0) return "_no stage timings recorded_";
  return markdownTable(["stage", "work", "wall time", "rate"], rows, ["left", "left", "right", "right"]);
}

/** The machine's load while the stages ran (time-weighted mean of the 1-minute load at each stage's end). */
export function loadLine(info: Pick<RunInfo, "stageSeconds" | "load">): string {
  const timed = info.stageSeconds.filter((s) => s.load !== undefined && s.seconds > 0);
  const note = "(2 cores, shared with other work; wall times scale with the load)";
  if (timed.length === 0) {
    return `Load average (1 min) when this invocation started / ended: ${info.load.start.toFixed(1)} / ${info.load.end.toFixed(1)} ${note}`;
  }
  const total = timed.reduce((a, s) => a + s.seconds, 0);
  const mean = timed.reduce((a, s) => a + s.seconds * (s.load ?? 0), 0) / total;
  const loads = timed.map((s) => s.load ?? 0);
  return `Load average (1 min) over the stages: ${mean.toFixed(1)} time-weighted mean, ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} range ${note}`;
}
