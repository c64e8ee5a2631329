import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join, relative, resolve } from "node:path";
import type { RunningDashboard } from "@idpo/dashboard";
import { encodePng, type Image } from "@idpo/data";
import { defaultTrainWorkers, initBackend } from "@idpo/diffusion";
import { serveLocalDashboard } from "@idpo/local-mesh";
import { PRETRAINED_BASE_SEED } from "@idpo/mesh";
import { BenchMesh } from "./bench-mesh.js";
import {
  configHash,
  type PaperConfig,
  type PaperConfigName,
  paperConfig,
  validatePaperConfig,
} from "./config.js";
import { dataReference } from "./data-reference.js";
import { BASE_KEY, type EvalContext, FIX_KEY, FIX_SDEDIT_KEY, samplesArtifact } from "./evaluate.js";
import { imageAt, labelledRows, learningCurveFigure, rewardFigure, sampleGrid } from "./figures.js";
import { datasetSpec, type PipelineContext, pretrainedRecipeCurve, runFaithful } from "./pipeline.js";
import { promptSets } from "./prompt-sets.js";
import { measuresRecipeCurve, readRecipeCurve, writeRecipeCurve } from "./recipe-curve.js";
import { type RunInfo, renderReport, type SeedRun } from "./report.js";
import type { ModelEval, PaperResults } from "./results.js";
import { readSeedRuns, seedFile, seedFilePath } from "./seed-runs.js";
import { formatDuration, StageRunner } from "./stage-runner.js";
import { runTuning } from "./tuning.js";

/** Options of `idpo bench paper`. */
export interface BenchPaperOptions {
  /** Which configuration. */
  config: PaperConfigName;
  /** Seeds to run, in order; the first one's results are the report's tables. */
  seeds: number[];
  /** Report directory: RESULTS.md (RESULTS-<config>.md for quick and scale), figures under results/<config>/. */
  out: string;
  /** Data directory of the embedded bus and of the benchmark's state. */
  dataDir: string;
  /** The command line, for the report. */
  command: string;
  /**
   * Data directories of other invocations of the same configuration (seeds run in parallel, one process
   * and data directory each), or seed files an earlier report committed (`results/<config>/seeds/seed-<n>.json`):
   * their finished seeds join the seed-noise section.
   */
  seedDataDirs?: string[];
  /** A configuration to use instead of the named one (its `name` must still be `config`); for tests. */
  override?: PaperConfig;
  /**
   * Port of the run dashboard on 127.0.0.1 while the benchmark runs (0: a free one; a busy port falls back
   * to a free one); false or absent: none.
   */
  dashboardPort?: number | false;
}

/** The services' settings the benchmark sets before starting them (sampling batch sizes, SPIN's sampler). */
export function serviceEnv(cfg: PaperConfig): Record<string, string> {
  return {
    IDPO_TRAINER_SPIN_STEPS: String(cfg.sampling.steps),
    IDPO_TRAINER_SPIN_GUIDANCE: String(cfg.sampling.guidanceScale),
    IDPO_GENERATOR_BATCH: "128",
    IDPO_IMPROVER_MAX_BATCH: "64",
    IDPO_GENERATOR_IMPROVE_CHUNK: "64",
    // One stage runs at a time: a generator that has not picked up a new checkpoint by itself within a
    // second is asked to load it.
    IDPO_CONTROLLER_LOAD_WAIT_MS: "1000",
  };
}

/**
 * Which engine ran what: sampling (Generator, Improver, and SPIN's losers, which the Trainer samples on the
 * same engine: the sidecar, or tfjs in its own thread) and training (the Trainer).
 */
async function engines(mesh: BenchMesh): Promise<string> {
  const tf = await initBackend();
  const env = Number(process.env.IDPO_TRAIN_WORKERS);
  const workers = Number.isInteger(env) && env > 0 ? env : defaultTrainWorkers(tf);
  // The sidecar's address is a loopback port chosen per invocation: what ran is its engine (and threads).
  const threads = process.env.IDPO_INFERENCE_THREADS;
  const backend = (await mesh.backend()).replace(
    /^sidecar \S+$/,
    `inference sidecar (ONNX Runtime${threads ? `, IDPO_INFERENCE_THREADS=${threads}` : ""})`,
  );
  return (
    `sampling (Generator, Improver, SPIN's losers): ${backend}; training (Trainer): tfjs ${tf.name}, ` +
    `${tf.threads} thread${tf.threads === 1 ? "" : "s"}, ${workers} data-parallel worker${workers === 1 ? "" : "s"}`
  );
}

/** The state directory of one seed of one configuration. */
function stateDir(dataDir: string, cfg: PaperConfig, seed: number): string {
  return join(dataDir, "bench-paper", `${cfg.name}-s${seed}`);
}

function machine(): string {
  const c = cpus();
  return `${c.length} × ${c[0]?.model.trim() ?? "unknown CPU"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}, Node ${process.version}`;
}

/** Results without per-image arrays (what is committed beside the report). */
function summaryJson(results: PaperResults): unknown {
  return JSON.parse(JSON.stringify(results, (k, v) => (k === "rewards" ? undefined : v)));
}

/** Runs one seed of the benchmark to its end (resuming at its first unfinished stage). */
async function runSeed(
  cfg: PaperConfig,
  seed: number,
  mesh: BenchMesh,
  dataDir: string,
  err: (s: string) => void,
): Promise<{ results: PaperResults; runner: StageRunner; ctx: PipelineContext }> {
  const tag = `${cfg.name}-s${seed}`;
  const dir = stateDir(dataDir, cfg, seed);
  const runner = await StageRunner.open(
    join(dir, "state.json"),
    { config: cfg.name, configHash: configHash(cfg), seed },
    (m) => err(`[${tag}] ${m}\n`),
  );
  runner.engines = await engines(mesh);
  const done = runner.finished().length;
  if (done > 0) err(`[${tag}] resuming: ${done} stages already finished\n`);
  const ctx: PipelineContext = {
    mesh,
    runner,
    sets: promptSets(cfg.eval, seed),
    sampling: cfg.sampling,
    tag,
    seed,
    cfg,
    progress: (line) => err(`[${tag}] ${line}\n`),
  };
  const faithful = await runFaithful(ctx);
  const results: PaperResults = {
    models: { ...faithful.models },
    mainRows: faithful.mainRows,
    series: faithful.series,
    pairSizes: faithful.pairSizes,
    trainMetrics: faithful.trainMetrics,
    baseCurve: faithful.baseCurve,
  };
  if (cfg.tuning.enabled) {
    const t = await runTuning(ctx, faithful);
    results.models[t.modelKey] = t.model;
    Object.assign(results.models, t.variantModels);
    results.tuning = {
      variants: t.variants,
      chosen: t.chosen,
      reason: t.reason,
      modelKey: t.modelKey,
      deployedKey: t.deployedKey,
    };
  }
  await writeFile(join(dir, "results.json"), `${JSON.stringify(results)}\n`);
  return { results, runner, ctx };
}

/**
 * Adds the shipped base's learning curve to the first seed's results: the one the report directory keeps
 * when it was measured with the same inputs (recipe-curve.ts), else `pretrainedRecipeCurve` (about 17
 * minutes of training on 2 cores, which no other stage reads, so the report is written once before it and
 * again after), whose curve is then kept there.
 */
async function addRecipeCurve(
  main: { results: PaperResults; ctx: PipelineContext },
  dataDir: string,
  out: string,
  command: string,
): Promise<boolean> {
  const { cfg, seed } = main.ctx;
  if (!measuresRecipeCurve(cfg, seed)) return false;
  const path = join(out, "results", cfg.name, "base-learning-curve.json");
  const stored = await readRecipeCurve(path, cfg);
  if (stored) {
    main.ctx.progress(
      `the shipped base's learning curve: ${relative(process.cwd(), path)} (measured ${stored.measured})`,
    );
    main.results.baseCurve = stored.baseCurve;
    main.results.baseCurveReference = stored.baseCurveReference;
  } else {
    const measured = await pretrainedRecipeCurve(main.ctx);
    main.results.baseCurve = measured.baseCurve;
    main.results.baseCurveReference = measured.baseCurveReference;
    await writeRecipeCurve(path, cfg, measured, `${new Date().toISOString()} by \`${command}\``);
  }
  const dir = stateDir(dataDir, main.ctx.cfg, main.ctx.seed);
  await writeFile(join(dir, "results.json"), `${JSON.stringify(main.results)}\n`);
  return true;
}

/** Every finished seed of this configuration under the data dir (for the noise section). */
async function writePng(path: string, img: Image): Promise<void> {
  await writeFile(path, encodePng(img));
}

/** Writes the figures of one seed's results; returns their paths relative to `out`. */
async function writeFigures(
  cfg: PaperConfig,
  results: PaperResults,
  ctx: EvalContext,
  out: string,
): Promise<RunInfo["figures"]> {
  const dir = join(out, "results", cfg.name);
  await mkdir(dir, { recursive: true });
  const rel = (p: string) => relative(out, p);
  const plot = join(dir, "reward-per-iteration.png");
  const figure = rewardFigure(results);
  await writeFile(plot, figure.png);
  await writeFile(plot.replace(/\.png$/, ".svg"), figure.svg);
  let curvePlot: string | undefined;
  if (results.baseCurve && results.baseCurve.length > 0) {
    curvePlot = join(dir, "base-learning-curve.png");
    const curve = learningCurveFigure(results.baseCurve, results.baseCurveReference);
    await writeFile(curvePlot, curve.png);
    await writeFile(curvePlot.replace(/\.png$/, ".svg"), curve.svg);
  }
  const last = (label: string) => {
    const s = results.series.find((x) => x.label === label);
    return s ? [s.keys[s.keys.length - 1]] : [];
  };
  const keys = [
    BASE_KEY,
    FIX_KEY,
    FIX_SDEDIT_KEY,
    "sft",
    "dpo",
    ...last("SPIN"),
    ...last("Ours from base"),
    ...last("Ours from SPIN"),
    ...(results.tuning ? [results.tuning.modelKey] : []),
  ].filter((k) => results.models[k]);
  const { train, test } = ctx.sets;
  const load = async (m: ModelEval, set: "train" | "test") => {
    const n = ctx.sets[set].prompts.length * ctx.sets[set].samplesPerPrompt;
    const b = await ctx.mesh.loadImages(samplesArtifact(ctx.tag, m.key, set), m.checkpointId, n);
    if (!b) throw new Error(`figures: the samples of ${m.key} on ${set} are missing from the artifact store`);
    return b;
  };
  const grids: RunInfo["figures"]["grids"] = [];
  const compareRows: { label: string; images: Image[] }[] = [];
  const nTest = Math.min(6, test.prompts.length);
  const nTrain = Math.min(4, train.prompts.length);
  for (const k of keys) {
    const m = results.models[k];
    const tr = await load(m, "train");
    const te = await load(m, "test");
    const gTrain = sampleGrid(tr, train.samplesPerPrompt, 4, 8);
    const gTest = sampleGrid(te, test.samplesPerPrompt, 4, 8);
    const file = join(dir, `samples-${k.replace(/\//g, "-")}.png`);
    await writePng(file, stackVertically([gTrain, gTest]));
    grids.push({ label: m.label, file: rel(file) });
    const images: Image[] = [];
    for (let p = 0; p < nTest; p++) images.push(imageAt(te, p * test.samplesPerPrompt));
    for (let p = 0; p < nTrain; p++) images.push(imageAt(tr, p * train.samplesPerPrompt));
    compareRows.push({ label: shortLabel(k, m.label), images });
  }
  const compare = join(dir, "compare.png");
  await writeFile(compare, labelledRows(compareRows).png);
  return { rewardPlot: rel(plot), curvePlot: curvePlot && rel(curvePlot), compare: rel(compare), grids };
}

/** A row label of at most 24 characters; the two one-shot fixers would otherwise read the same. */
function shortLabel(key: string, label: string): string {
  if (key === FIX_KEY) return "Improver, one shot";
  if (key === FIX_SDEDIT_KEY) return "Improver SDEdit, 1 shot";
  return label
    .replace(/\(.*\)/, "")
    .replace(/\s+/g, " ")
    .trim()
    .slice(0, 24);
}

function stackVertically(images: readonly Image[]): Image {
  const width = Math.max(...images.map((i) => i.width));
  const height = images.reduce((a, i) => a + i.height, 0) + 4 * (images.length - 1);
  const data = new Float32Array(height * width * 3).fill(1);
  let top = 0;
  for (const img of images) {
    for (let y = 0; y < img.height; y++) {
      data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), (top + y) * width * 3);
    }
    top += img.height + 4;
  }
  return { height, width, data };
}

/** Writes the report of `main` (the first seed) and its figures, with every finished seed's noise; returns its path. */
async function writeReport(
  cfg: PaperConfig,
  opts: BenchPaperOptions,
  main: { results: PaperResults; runner: StageRunner; ctx: PipelineContext },
  mesh: BenchMesh,
  dataDir: string,
  out: string,
  clock: { started: number; loadStart: number },
): Promise<string> {
  const { results, runner, ctx } = main;
  const backend = await engines(mesh);
  await mkdir(out, { recursive: true });
  const seeds: SeedRun[] = [];
  for (const source of [dataDir, ...(opts.seedDataDirs ?? []).map((d) => resolve(d))]) {
    for (const run of await readSeedRuns(source, cfg)) {
      if (!seeds.some((s) => s.seed === run.seed)) seeds.push(run);
    }
  }
  // The shipped base's learning curve is measured once, by the seed that made it (pretrainedRecipeCurve);
  // every seed starts from that base, so a report led by another seed shows that seed's curve.
  if (!results.baseCurve?.length) {
    const donor = seeds.find((s) => s.seed === PRETRAINED_BASE_SEED && s.results.baseCurve?.length);
    if (donor) {
      results.baseCurve = donor.results.baseCurve;
      results.baseCurveReference = donor.results.baseCurveReference;
    }
  }
  const figures = await writeFigures(cfg, results, ctx, out);
  seeds.sort((a, b) => a.seed - b.seed);
  const ordered = [
    seeds.find((s) => s.seed === opts.seeds[0]),
    ...seeds.filter((s) => s.seed !== opts.seeds[0]),
  ].filter((s): s is SeedRun => s !== undefined);
  const snap = runner.snapshot();
  const info: RunInfo = {
    command: opts.command,
    seed: opts.seeds[0],
    backend: backend || "unknown",
    machine: machine(),
    load: { start: clock.loadStart, end: loadavg()[0] },
    date: new Date().toISOString(),
    stageSeconds: Object.entries(snap.stages)
      .sort((a, b) => a[1].finishedAt.localeCompare(b[1].finishedAt))
      .map(([stage, r]) => ({
        stage,
        seconds: r.seconds,
        load: r.load,
        ...(r.engines !== undefined ? { engines: r.engines } : {}),
      })),
    invocationSeconds: (Date.now() - clock.started) / 1000,
    figures,
    reference: dataReference(datasetSpec(cfg, opts.seeds[0]), {
      train: ctx.sets.train.prompts,
      test: ctx.sets.test.prompts,
    }),
    sets: Object.values(ctx.sets).map((s) => ({
      name: s.name,
      prompts: s.prompts,
      samplesPerPrompt: s.samplesPerPrompt,
      seed: s.seed,
    })),
  };
  // The default configuration's report is RESULTS.md; the others sit beside it, named after their config.
  const report = join(out, cfg.name === "default" ? "RESULTS.md" : `RESULTS-${cfg.name}.md`);
  await writeFile(report, renderReport(cfg, results, info, ordered));
  await writeFile(
    join(out, "results", cfg.name, "results.json"),
    `${JSON.stringify(summaryJson(results), null, 1)}\n`,
  );
  // Every seed in full (rewards per image included), so that a later invocation can add seeds to these.
  await mkdir(join(out, "results", cfg.name, "seeds"), { recursive: true });
  for (const run of ordered) {
    await writeFile(seedFilePath(out, cfg, run.seed), `${JSON.stringify(seedFile(cfg, run))}\n`);
  }
  return report;
}

/**
 * `idpo bench paper`: starts the mesh, runs every requested seed (each resuming at its first unfinished
 * stage), and writes RESULTS.md with its figures.
 */
export async function runBenchPaper(
  opts: BenchPaperOptions,
  err: (s: string) => void,
): Promise<{ report: string; seconds: number }> {
  const started = Date.now();
  const loadStart = loadavg()[0];
  const cfg = opts.override ?? paperConfig(opts.config);
  if (cfg.name !== opts.config) throw new Error(`the override is config "${cfg.name}", not "${opts.config}"`);
  validatePaperConfig(cfg);
  if (opts.seeds.length === 0) throw new Error("no seeds to run");
  const dataDir = resolve(opts.dataDir);
  const out = resolve(opts.out);
  for (const [k, v] of Object.entries(serviceEnv(cfg))) process.env[k] = v;
  err(
    `idpo bench paper: config "${cfg.name}" (${configHash(cfg)}), seeds ${opts.seeds.join(", ")}, data dir ${dataDir}\n`,
  );
  const mesh = await BenchMesh.start(dataDir, (line) => err(`${line}\n`));
  err(`  services: in this process on loopback ports; logs in ${mesh.logFile}\n`);
  let dashboard: RunningDashboard | undefined;
  if (opts.dashboardPort !== undefined && opts.dashboardPort !== false) {
    dashboard = await serveLocalDashboard(opts.dashboardPort, mesh.urls);
    err(`  dashboard: ${dashboard.url} (the iterated methods' runs, live while the benchmark runs)\n`);
  }
  const onSigint = () => {
    err("\ninterrupted: stopping the services (rerun the same command to resume)\n");
    void mesh.shutdown().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSigint);
  try {
    let main: { results: PaperResults; runner: StageRunner; ctx: PipelineContext } | undefined;
    for (const seed of opts.seeds) {
      const r = await runSeed(cfg, seed, mesh, dataDir, err);
      main ??= r;
    }
    const write = () => writeReport(cfg, opts, main!, mesh, dataDir, out, { started, loadStart });
    let report = await write();
    if (await addRecipeCurve(main!, dataDir, out, opts.command)) report = await write();
    const seconds = (Date.now() - started) / 1000;
    err(`idpo bench paper: done in ${formatDuration(seconds)}; report ${report}\n`);
    return { report, seconds };
  } finally {
    process.removeListener("SIGINT", onSigint);
    await dashboard?.close();
    await mesh.shutdown();
  }
}
