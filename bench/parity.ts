/**
 * `npm run bench:parity`: idpo against its PyTorch twin, trained with one recipe on the same offline pairs
 * and sampled on the same held-out prompts from the same initial noise, so that a sampler or training
 * defect cannot hide.
 *
 * 1. idpo trains the base (ε-MSE on every image of the pairs) through the Trainer service's job path, as a
 *    run's base stage does (an in-process mesh on the embedded bus) — or `--checkpoint FILE` takes weights
 *    that idpo already trained (with that recipe, `--seed` the job's seed).
 * 2. The twin (bench/torch_twin.py) starts from the same initial weights (idpo's initialisation with the
 *    job's seed, exchanged as safetensors through one name/layout map) and reads the examples in the order
 *    idpo's Trainer reads them (ExampleStream with the job's seed); its timesteps, noise and dropout coins
 *    are its own, so the two runs differ only by those draws and by the implementation.
 * 3. Both models are sampled by both samplers (DDIM, classifier-free guidance) on the held-out test prompts,
 *    image i of prompt p from the same initial noise everywhere, and scored with the oracle. The report:
 *    each reward with its 95 % CI over prompts, the paired difference twin − idpo with its CI, the two
 *    crossed figures (idpo weights sampled by the twin, twin weights sampled by idpo), the loss curves side
 *    by side (loss-curves.png) and a same-noise sample grid (samples.png), under --out.
 *
 * Options: --steps 1000 --batch 96 --lr 2e-3 --warmup 50 --ema 0.999 --clip 1 --dropout 0.1
 *          --pairs 3000 --data-seed 0 --seed 1 --preset shapes16 --samples 8 --guidance 3
 *          --sampling-steps 20 --threads 1 --checkpoint FILE --out bench/out/parity
 * Environment: IDPO_BENCH_PYTHON overrides the interpreter of the PyTorch side (default /usr/bin/python3).
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { curveChartOption } from "@idpo/charts";
import { renderChart } from "@idpo/charts/render";
import { composeGrid, encodePng, formatShapesPrompt, type Image, shapesPrompts } from "@idpo/data";
import {
  createModel,
  type DiffusionModel,
  decodeCheckpoint,
  decodeSafetensors,
  encodeCheckpoint,
  initBackend,
  type PresetName,
  preset,
  Rng,
  sample,
} from "@idpo/diffusion";
import { startLocalMesh } from "@idpo/local-mesh";
import { CheckpointStore, parseDataUri, sharedBus } from "@idpo/mesh";
import { oracleRewardValue } from "@idpo/metrics";
import { JobKind, JobSpecSchema, JobState, TrainerService } from "@idpo/proto";
import { createLogger, createPeerTransport } from "@idpo/runtime";
import { ExampleStream, openPairSources } from "@idpo/trainer";
import * as tf from "@tensorflow/tfjs-core";
import { formatCI, promptCI } from "./paired-stats.js";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.IDPO_BENCH_PYTHON ?? "/usr/bin/python3";

const { values } = parseArgs({
  options: {
    steps: { type: "string", default: "1000" },
    batch: { type: "string", default: "96" },
    lr: { type: "string", default: "2e-3" },
    warmup: { type: "string", default: "50" },
    ema: { type: "string", default: "0.999" },
    clip: { type: "string", default: "1" },
    dropout: { type: "string", default: "0.1" },
    pairs: { type: "string", default: "3000" },
    "data-seed": { type: "string", default: "0" },
    seed: { type: "string", default: "1" },
    preset: { type: "string", default: "shapes16" },
    samples: { type: "string", default: "8" },
    guidance: { type: "string", default: "3" },
    "sampling-steps": { type: "string", default: "20" },
    threads: { type: "string", default: "1" },
    checkpoint: { type: "string" },
    out: { type: "string", default: join(here, "out", "parity") },
  },
});

function int(name: string, min: number): number {
  const v = Number(values[name as keyof typeof values]);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer ≥ ${min}, got ${v}`);
  return v;
}
function num(name: string, lo: number, hi: number): number {
  const v = Number(values[name as keyof typeof values]);
  if (!(v >= lo && v <= hi)) throw new Error(`--${name} must be in [${lo}, ${hi}], got ${v}`);
  return v;
}

const recipe = {
  steps: int("steps", 1),
  batch: int("batch", 1),
  lr: num("lr", 1e-8, 1),
  warmup: int("warmup", 0),
  ema: num("ema", 0, 0.99999),
  clip: num("clip", 0, 1e6),
  dropout: num("dropout", 0, 1),
  seed: int("seed", 0),
};
const pairs = int("pairs", 1);
const dataSeed = int("data-seed", 0);
const samplesPerPrompt = int("samples", 2);
const guidance = num("guidance", 0, 30);
const samplingSteps = int("sampling-steps", 1);
const threads = int("threads", 1);
const presetName = values.preset as PresetName;
const out = resolve(values.out!);
mkdirSync(out, { recursive: true });
const work = mkdtempSync(join(tmpdir(), "idpo-parity-"));
/** The twin's trained weights (kept under --out for a later invocation with the same recipe). */
const twinPath = join(out, "twin.safetensors");
const log = (msg: string) =>
  process.stderr.write(`[parity ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);

/** Runs the twin with a JSON spec and returns its TWIN_RESULT; progress lines are echoed. */
function twin<T>(cmd: "eps" | "train" | "sample", spec: object): Promise<T> {
  const path = join(work, `${cmd}-spec.json`);
  writeFileSync(path, JSON.stringify(spec));
  return new Promise((done, fail) => {
    const child = spawn(PYTHON, [join(here, "torch_twin.py"), cmd, path], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d;
      const lines = stdout.split("\n");
      stdout = lines.pop() ?? "";
      for (const line of lines) {
        if (line.startsWith("TWIN_RESULT ")) {
          done(JSON.parse(line.slice("TWIN_RESULT ".length)) as T);
        } else if (line.trim()) log(`twin ${cmd}: ${line}`);
      }
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d;
    });
    child.on("error", fail);
    child.on("close", (code) => {
      if (code !== 0) fail(new Error(`torch_twin.py ${cmd} exited ${code}:\n${stderr.slice(-4000)}`));
    });
  });
}

function writeF32(name: string, data: Float32Array): string {
  const path = join(work, name);
  writeFileSync(path, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  return path;
}
function writeI32(name: string, data: Int32Array): string {
  const path = join(work, name);
  writeFileSync(path, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  return path;
}

/** idpo's base training through the Trainer job path; returns the checkpoint bytes and the loss per step. */
async function trainWithIdpo(
  trainerUrl: string,
  dataset: string,
): Promise<{ bytes: Uint8Array; losses: number[] }> {
  const trainer = createClient(TrainerService, createPeerTransport(trainerUrl));
  const spec = create(JobSpecSchema, {
    jobId: `parity-${recipe.seed}`,
    kind: JobKind.PRETRAIN,
    data: [dataset],
    modelPreset: presetName,
    outputCheckpointId: `parity/idpo-${recipe.seed}`,
    training: {
      steps: recipe.steps,
      batchSize: recipe.batch,
      learningRate: recipe.lr,
      warmupSteps: recipe.warmup,
      maxGradNorm: recipe.clip,
      promptDropout: recipe.dropout,
      emaDecay: recipe.ema,
      seed: BigInt(recipe.seed),
    },
  });
  await trainer.startJob({ spec });
  const losses: number[] = [];
  let last = 0;
  for await (const res of trainer.watchJob({ jobId: spec.jobId })) {
    const job = res.job!;
    if (job.step > losses.length && job.metrics.loss !== undefined) {
      while (losses.length < job.step) losses.push(job.metrics.loss);
    }
    if (job.step - last >= Math.max(1, Math.floor(recipe.steps / 20))) {
      last = job.step;
      log(`idpo train: step ${job.step}/${recipe.steps} loss ${job.metrics.loss?.toFixed(4)}`);
    }
    if (job.state === JobState.FAILED) throw new Error(`idpo training failed: ${job.error}`);
    if (job.state === JobState.SUCCEEDED) break;
  }
  const got = await new CheckpointStore((await sharedBus()).artifacts).get(spec.outputCheckpointId);
  if (!got) throw new Error(`checkpoint ${spec.outputCheckpointId} was not stored`);
  return { bytes: got.bytes, losses };
}

/** A model with the config of `like` and the weights of a twin-written safetensors file (idpo's names). */
function modelFromTwin(path: string, like: DiffusionModel): DiffusionModel {
  const file = decodeSafetensors(readFileSync(path));
  const model = createModel(like.config, 0, { trainable: false });
  for (const [name, v] of model.params) {
    const t = file.tensors.get(name);
    if (!t) throw new Error(`${path}: no tensor ${name}`);
    if (t.shape.join(",") !== v.shape.join(",")) throw new Error(`${path}: ${name} has shape ${t.shape}`);
    const value = tf.tensor(t.data, v.shape);
    v.assign(value);
    value.dispose();
  }
  return model;
}

interface Scored {
  /** Oracle reward per image, prompt-major. */
  rewards: number[];
  /** The images, prompt-major. */
  images: Image[];
}

function score(data: Float32Array, prompts: readonly string[], size: number): Scored {
  const per = size * size * 3;
  const images: Image[] = [];
  const rewards: number[] = [];
  for (let i = 0; i < prompts.length; i++) {
    const img: Image = { width: size, height: size, data: data.slice(i * per, (i + 1) * per) };
    images.push(img);
    rewards.push(oracleRewardValue(img, prompts[i]));
  }
  return { rewards, images };
}

/** Every image of the pairs (indexed as the Trainer indexes them), their tokens, and the Trainer's read order. */
interface TrainingData {
  images: Float32Array;
  nImages: number;
  order: Int32Array;
  tokens: ReturnType<DiffusionModel["tokenizer"]["encode"]>;
}

async function main(): Promise<void> {
  await initBackend({ log: (m) => log(m) });
  const dataset = `shapes://?pairs=${pairs}&size=16&seed=${dataSeed}`;
  const started = performance.now();

  // The same initial weights on both sides: idpo's initialisation with the job's seed.
  const init = createModel(preset(presetName), recipe.seed, { trainable: false });
  const initPath = join(work, "init.safetensors");
  writeFileSync(initPath, encodeCheckpoint(init, { step: 0, parent: null }));

  // An in-process mesh on the embedded bus: the Trainer's job path, and its data reader.
  const mesh = await startLocalMesh({ dataDir: join(work, "mesh"), logger: createLogger("warn") });
  let data: TrainingData;
  let idpo: IdpoTraining;
  try {
    data = await readTrainingData(init, dataset);
    idpo = await idpoTraining(mesh.urls.trainer, dataset);
  } finally {
    await mesh.shutdown();
  }
  const idpoPath = join(work, "idpo.safetensors");
  writeFileSync(idpoPath, idpo.bytes);
  const trained = await twinTraining(initPath, data, dataset);

  const plan = samplingPlan(init);
  const idpoModel = decodeCheckpoint(idpo.bytes).model;
  const twinModel = modelFromTwin(twinPath, idpoModel);
  const cells = await sampleCells(plan, [
    ["idpo", idpoModel, idpoPath],
    ["twin", twinModel, twinPath],
  ]);
  writeReport(cells, plan.testPrompts, dataset, idpo, trained, started);
  writeLossChart(idpo.losses, trained.losses);
  writeSampleGrid(cells, plan.testPrompts);
  log(
    `wrote ${out}/parity.md, parity.json, loss-curves.png, samples.png (rows: idpo/idpo, idpo/twin, twin/idpo, twin/twin)`,
  );
  idpoModel.dispose();
  twinModel.dispose();
  init.dispose();
}

/** The examples in the order idpo's Trainer reads them, and every other image of the pairs. */
async function readTrainingData(init: DiffusionModel, dataset: string): Promise<TrainingData> {
  const S = init.imageSize;
  log(`data: ${dataset}, order of ${recipe.steps} × ${recipe.batch} examples (seed ${recipe.seed})`);
  const sources = await openPairSources([parseDataUri(dataset, "dataset")], {
    artifacts: (await sharedBus()).artifacts,
    dataDir: join(work, "mesh"),
  });
  const nImages = 2 * sources.reduce((a, s) => a + s.count, 0);
  const images = new Float32Array(nImages * S * S * 3);
  const imagePrompts: string[] = new Array(nImages);
  const stream = new ExampleStream(sources, "images", { seed: recipe.seed });
  const order = new Int32Array(recipe.steps * recipe.batch);
  let k = 0;
  for await (const ex of stream.from(0)) {
    if (imagePrompts[ex.index] === undefined) {
      imagePrompts[ex.index] = ex.prompt;
      images.set(ex.image.data, ex.index * S * S * 3);
    }
    order[k++] = ex.index;
    if (k === order.length) break;
  }
  // Images the order never reached are still exported, so the file is complete.
  let p = 0;
  for (const s of sources) {
    for await (const r of s.records()) {
      for (const [j, img] of [r.winner, r.loser].entries()) {
        if (imagePrompts[2 * p + j] === undefined) {
          imagePrompts[2 * p + j] = r.prompt;
          images.set(img.data, (2 * p + j) * S * S * 3);
        }
      }
      if (++p >= s.count) break;
    }
  }
  return { images, nImages, order, tokens: init.tokenizer.encode(imagePrompts) };
}

/** idpo's trained weights, its loss per step and its training time (NaN for a given checkpoint). */
interface IdpoTraining {
  bytes: Uint8Array;
  losses: number[];
  seconds: number;
}

/** idpo's training, through the Trainer (or the weights of --checkpoint). */
async function idpoTraining(trainerUrl: string, dataset: string): Promise<IdpoTraining> {
  if (values.checkpoint) {
    const bytes = readFileSync(values.checkpoint);
    log(`idpo weights from ${values.checkpoint}`);
    return { bytes, losses: [], seconds: Number.NaN };
  }
  const t0 = performance.now();
  log(`idpo train: ${recipe.steps} steps × ${recipe.batch} through the Trainer`);
  const { bytes, losses } = await trainWithIdpo(trainerUrl, dataset);
  return { bytes, losses, seconds: (performance.now() - t0) / 1000 };
}

/**
 * The twin's training; its weights and losses are kept under --out, and reused by a later invocation with
 * the same recipe, data and preset (the twin trains for a quarter of an hour on a busy 2-core machine).
 */
async function twinTraining(
  initPath: string,
  data: TrainingData,
  dataset: string,
): Promise<{ losses: number[]; seconds: number }> {
  const twinResultPath = join(out, "twin-train.json");
  const twinKey = JSON.stringify({ recipe, dataset, presetName });
  if (existsSync(twinPath) && existsSync(twinResultPath)) {
    const cached = JSON.parse(readFileSync(twinResultPath, "utf8")) as {
      key: string;
      losses: number[];
      seconds: number;
    };
    if (cached.key === twinKey) {
      log(`twin weights from ${twinPath} (trained by an earlier invocation with this recipe)`);
      return cached;
    }
  }
  log(`twin train: ${recipe.steps} steps × ${recipe.batch} (${threads} thread(s))`);
  const trained = await twin<{ losses: number[]; seconds: number }>("train", {
    init: initPath,
    images: writeF32("images.f32", data.images),
    images_count: data.nImages,
    ids: writeI32("ids.i32", data.tokens.ids),
    mask: writeF32("mask.f32", data.tokens.mask),
    order: writeI32("order.i32", data.order),
    steps: recipe.steps,
    batch: recipe.batch,
    lr: recipe.lr,
    warmup: recipe.warmup,
    max_grad_norm: recipe.clip,
    prompt_dropout: recipe.dropout,
    ema: recipe.ema,
    seed: recipe.seed,
    threads,
    out: twinPath,
  });
  writeFileSync(twinResultPath, JSON.stringify({ key: twinKey, ...trained }));
  return trained;
}

/** The held-out prompts, `samplesPerPrompt` seeds each, and the twin's inputs: the same initial noise everywhere. */
interface SamplingPlan {
  size: number;
  testPrompts: string[];
  prompts: string[];
  seeds: number[];
  twinInputs: object;
}

function samplingPlan(init: DiffusionModel): SamplingPlan {
  const S = init.imageSize;
  const testPrompts = shapesPrompts("test").map(formatShapesPrompt);
  const prompts: string[] = [];
  const seeds: number[] = [];
  for (let i = 0; i < testPrompts.length; i++) {
    for (let j = 0; j < samplesPerPrompt; j++) {
      prompts.push(testPrompts[i]);
      seeds.push(1_000_003 * (i + 1) + j);
    }
  }
  const per = S * S * 3;
  const noise = new Float32Array(prompts.length * per);
  // The first draw of Rng(seed) is the sampler's initial noise (samplers.ts NoiseSource).
  seeds.forEach((s, i) => {
    new Rng(s).normals(per, noise, i * per);
  });
  const sampleTokens = init.tokenizer.encode(prompts);
  const twinInputs = {
    n: prompts.length,
    noise: writeF32("noise.f32", noise),
    ids: writeI32("sample-ids.i32", sampleTokens.ids),
    mask: writeF32("sample-mask.f32", sampleTokens.mask),
    guidance,
    steps: samplingSteps,
    threads,
  };
  return { size: S, testPrompts, prompts, seeds, twinInputs };
}

/** Both weights sampled by both samplers and scored: cells keyed "weights/sampler". */
async function sampleCells(
  plan: SamplingPlan,
  models: readonly (readonly ["idpo" | "twin", DiffusionModel, string])[],
): Promise<Record<string, Scored>> {
  const { prompts, seeds, size: S } = plan;
  const cells: Record<string, Scored> = {};
  for (const [weights, model, path] of models) {
    log(`sample ${weights} weights with idpo's sampler (${prompts.length} images)`);
    const mine = await sample(model, { prompts, seeds, steps: samplingSteps, guidanceScale: guidance });
    cells[`${weights}/idpo`] = score(mine.data, prompts, S);
    log(`sample ${weights} weights with the twin's sampler`);
    const outPath = join(work, `sample-${weights}.f32`);
    await twin("sample", { ...plan.twinInputs, checkpoint: path, out: outPath });
    const data = new Float32Array(readFileSync(outPath).buffer.slice(0));
    cells[`${weights}/twin`] = score(data, prompts, S);
  }
  return cells;
}

/** Each cell's reward and the paired differences between cells, with their 95 % CIs over prompts. */
function parityTables(cells: Record<string, Scored>) {
  const k8 = samplesPerPrompt;
  const ci = (key: string) => promptCI(cells[key].rewards, k8);
  const paired = (a: string, b: string) =>
    promptCI(
      cells[b].rewards.map((v, i) => v - cells[a].rewards[i]),
      k8,
    );
  const rows = [
    ["idpo-trained, idpo sampler", ci("idpo/idpo")],
    ["twin-trained, twin sampler", ci("twin/twin")],
    ["idpo-trained, twin sampler (crossed)", ci("idpo/twin")],
    ["twin-trained, idpo sampler (crossed)", ci("twin/idpo")],
  ] as const;
  const diffs = [
    ["training: twin − idpo weights, idpo sampler", paired("idpo/idpo", "twin/idpo")],
    ["training: twin − idpo weights, twin sampler", paired("idpo/twin", "twin/twin")],
    ["sampler: twin − idpo sampler, idpo weights", paired("idpo/idpo", "idpo/twin")],
    ["sampler: twin − idpo sampler, twin weights", paired("twin/idpo", "twin/twin")],
    ["both: twin/twin − idpo/idpo", paired("idpo/idpo", "twin/twin")],
  ] as const;
  return { rows, diffs };
}

/** The rewards with their CIs and the paired differences, as parity.md (also on stdout) and parity.json. */
function writeReport(
  cells: Record<string, Scored>,
  testPrompts: readonly string[],
  dataset: string,
  idpo: IdpoTraining,
  trained: { losses: number[]; seconds: number },
  started: number,
): void {
  const { rows, diffs } = parityTables(cells);
  const lines = [
    `# idpo vs its PyTorch twin (npm run bench:parity)`,
    "",
    `Recipe: preset ${presetName}, ${recipe.steps} steps × ${recipe.batch} on ${dataset} (every image of the pairs), ` +
      `AdamW lr ${recipe.lr} after ${recipe.warmup} warmup steps, clip ${recipe.clip}, prompt dropout ${recipe.dropout}, ` +
      `EMA ${recipe.ema}, seed ${recipe.seed}. Sampling: DDIM-${samplingSteps}, CFG ${guidance}, ` +
      `${testPrompts.length} held-out test prompts × ${samplesPerPrompt}, the same initial noise for every cell. ` +
      `Reward: the shapes oracle, mean ± 95 % CI over prompts.`,
    "",
    "| weights, sampler | test reward |",
    "|---|---:|",
    ...rows.map(([label, c]) => `| ${label} | ${formatCI(c)} |`),
    "",
    "| paired difference (per prompt) | Δ reward |",
    "|---|---:|",
    ...diffs.map(([label, c]) => `| ${label} | ${formatCI(c, true)} |`),
    "",
    `Final training loss (mean of the last 10 % of steps): idpo ${tailMean(idpo.losses)}, twin ${tailMean(trained.losses)}. ` +
      `Training time: idpo ${Number.isNaN(idpo.seconds) ? "(given checkpoint)" : `${idpo.seconds.toFixed(0)} s`}, ` +
      `twin ${trained.seconds.toFixed(0)} s (${threads} thread(s)). Total ${((performance.now() - started) / 1000).toFixed(0)} s.`,
    "",
  ];
  const report = lines.join("\n");
  process.stdout.write(`${report}\n`);
  writeFileSync(join(out, "parity.md"), report);
  writeFileSync(
    join(out, "parity.json"),
    JSON.stringify(
      {
        recipe,
        dataset,
        presetName,
        samplingSteps,
        guidance,
        samplesPerPrompt,
        rewards: Object.fromEntries(rows.map(([l, c]) => [l, c])),
        paired: Object.fromEntries(diffs.map(([l, c]) => [l, c])),
        losses: { idpo: idpo.losses, twin: trained.losses },
      },
      null,
      2,
    ),
  );
}

/** Mean of each run of ⌊n/50⌋ steps, at the run's last step. */
function smooth(xs: readonly number[]): { x: number; y: number }[] {
  const w = Math.max(1, Math.floor(xs.length / 50));
  const pts: { x: number; y: number }[] = [];
  for (let i = 0; i + w <= xs.length; i += w) {
    let s = 0;
    for (let j = i; j < i + w; j++) s += xs[j];
    pts.push({ x: i + w, y: s / w });
  }
  return pts;
}

/** loss-curves.png and .svg: both runs' smoothed training losses (idpo's when it trained here). */
function writeLossChart(idpoLosses: readonly number[], twinLosses: readonly number[]): void {
  const curves = [{ name: "twin (PyTorch)", points: smooth(twinLosses) }];
  if (idpoLosses.length > 0) curves.unshift({ name: "idpo (tfjs)", points: smooth(idpoLosses) });
  // The two runs may log different step counts: one step axis, each curve null where it has no point.
  const steps = [...new Set(curves.flatMap((c) => c.points.map((p) => p.x)))].sort((a, b) => a - b);
  const lossChart = renderChart(
    curveChartOption({
      title: "training loss (eps-MSE)",
      steps,
      series: curves.map((c) => {
        const at = new Map(c.points.map((p) => [p.x, p.y]));
        return { name: c.name, values: steps.map((x) => at.get(x) ?? null) };
      }),
    }),
    { width: 640, height: 360 },
  );
  writeFileSync(join(out, "loss-curves.png"), lossChart.png);
  writeFileSync(join(out, "loss-curves.svg"), lossChart.svg);
}

/** samples.png: one column per prompt (the first 12), rows = the four cells, first seed each (same noise). */
function writeSampleGrid(cells: Record<string, Scored>, testPrompts: readonly string[]): void {
  const columns = Math.min(12, testPrompts.length);
  const grid = ["idpo/idpo", "idpo/twin", "twin/idpo", "twin/twin"].map((key) =>
    Array.from({ length: columns }, (_, i) => cells[key].images[i * samplesPerPrompt]),
  );
  writeFileSync(join(out, "samples.png"), encodePng(composeGrid(grid, { scale: 4 })));
}

function tailMean(xs: readonly number[]): string {
  if (xs.length === 0) return "(not recorded)";
  const from = Math.floor(xs.length * 0.9);
  const tail = xs.slice(from);
  return (tail.reduce((a, b) => a + b, 0) / tail.length).toFixed(4);
}

main()
  .then(() => rmSync(work, { recursive: true, force: true }))
  .catch((err) => {
    process.stderr.write(`bench:parity: ${(err as Error).stack ?? err}\n`);
    process.exitCode = 1;
  });
