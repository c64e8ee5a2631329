/**
 * One backend's measurements for `npm run bench` (run.ts starts this in a child process per backend,
 * so that each backend and thread count gets a fresh process). Prints one line
 * `BENCH_RESULT <json>` at the end.
 *
 * Usage: tsx bench/measure.ts --backend wasm|cpu|tensorflow|tensorflow-gpu --threads N
 *        [--forward-batch 32] [--sample-images 32] [--train-pairs 16] [--train-images 32]
 *        [--train-workers W] [--min-seconds 4] [--profile]
 * With --train-workers W > 1 only training is measured, with DataParallelTrainer (W workers of one
 * thread each; --threads is then this process's own backend).
 */
import { loadavg } from "node:os";
import {
  type BackendName,
  type CaptionedBatch,
  cloneModel,
  createModel,
  DataParallelTrainer,
  type DiffusionModel,
  dpoObjective,
  type ImageBatch,
  improve,
  improverFromPolicy,
  initBackend,
  type Objective,
  type Params,
  type PreferenceBatch,
  preset,
  pretrainObjective,
  Rng,
  sample,
  Trainer,
  type TrainingDriver,
} from "@idpo/diffusion";
import * as tf from "@tensorflow/tfjs-core";
import { type ModelCost, modelCost } from "./flops.js";
import { type Measurement, measurement, timeIt } from "./timing.js";

/** Settings of one measurement run. */
export interface MeasureOptions {
  /** Backend to force. */
  backend: BackendName;
  /** Compute threads. */
  threads: number;
  /** Images per UNet forward call. */
  forwardBatch: number;
  /** Images per sampling call (text-to-image and improver). */
  sampleImages: number;
  /** Preference pairs per DPO training step. */
  trainPairs: number;
  /** Images per ε-MSE training step. */
  trainImages: number;
  /** Data-parallel training workers (1: Trainer in this thread). */
  trainWorkers: number;
  /** Each measurement repeats until it has run this long (after one warm-up call). */
  minSeconds: number;
  /** Also record a per-kernel profile of one training step and one sampling step. */
  profile: boolean;
}

export type { Measurement } from "./timing.js";

/** Time spent in one kernel during a profiled call. */
export interface KernelTime {
  name: string;
  ms: number;
  calls: number;
}

/** What a child reports. */
export interface BackendResult {
  backend: string;
  threads: number;
  wasmBinary?: string;
  preset: string;
  params: { unet: number; text: number; total: number };
  flops: { unetForwardPerImage: number; textForwardPerPrompt: number };
  /** Inference figures (absent for a data-parallel training run). */
  forward?: Measurement;
  sampling?: Measurement;
  improver?: Measurement;
  /** DPO training, pairs/s. */
  training: Measurement;
  /** ε-MSE training (pretraining, SFT), images/s. */
  epsTraining: Measurement;
  /** Data-parallel training workers (1: the Trainer in the calling thread). */
  trainWorkers: number;
  loadBefore: number[];
  loadAfter: number[];
  /** Top kernels by time of one training step and of one CFG sampling step. */
  profile?: Record<string, KernelTime[]>;
}

const PROMPTS = [
  "a small red circle on a black background",
  "a large blue square on a white background",
  "a medium green triangle on a navy background",
  "a large yellow circle on a gray background",
];

function parseArgs(argv: string[]): MeasureOptions {
  const opts: MeasureOptions = {
    backend: "wasm",
    threads: 2,
    forwardBatch: 32,
    sampleImages: 32,
    trainPairs: 16,
    trainImages: 32,
    trainWorkers: 1,
    minSeconds: 4,
    profile: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    const value = argv[i + 1];
    const int = () => {
      const v = Number(value);
      if (!Number.isFinite(v) || v <= 0)
        throw new Error(`bench/measure: ${flag} needs a positive number, got ${value}`);
      i++;
      return v;
    };
    switch (flag) {
      case "--backend":
        opts.backend = value as BackendName;
        i++;
        break;
      case "--threads":
        opts.threads = int();
        break;
      case "--forward-batch":
        opts.forwardBatch = int();
        break;
      case "--sample-images":
        opts.sampleImages = int();
        break;
      case "--train-pairs":
        opts.trainPairs = int();
        break;
      case "--train-images":
        opts.trainImages = int();
        break;
      case "--train-workers":
        opts.trainWorkers = int();
        break;
      case "--min-seconds":
        opts.minSeconds = int();
        break;
      case "--profile":
        opts.profile = true;
        break;
      default:
        throw new Error(`bench/measure: unknown argument ${flag}`);
    }
  }
  return opts;
}

function randomImages(n: number, size: number, seed: number): ImageBatch {
  const rng = new Rng(seed);
  const data = new Float32Array(n * size * size * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.next();
  return { n, height: size, width: size, channels: 3 as const, data };
}

async function kernelProfile(fn: () => void): Promise<KernelTime[]> {
  const info = await tf.profile(fn);
  const by = new Map<string, { ms: number; calls: number }>();
  for (const k of info.kernels) {
    // Ops that wrap kernels (names ending in __op, "unnamed scope") would count their kernels twice.
    if (k.name.endsWith("__op") || k.name === "unnamed scope") continue;
    const e = by.get(k.name) ?? { ms: 0, calls: 0 };
    e.ms += Number(k.kernelTimeMs);
    e.calls++;
    by.set(k.name, e);
  }
  return [...by.entries()].map(([name, e]) => ({ name, ...e })).sort((a, b) => b.ms - a.ms);
}

/** Forward, text-to-image sampling and improver sampling (the inference figures). */
async function measureInference(
  policy: DiffusionModel,
  improver: DiffusionModel,
  opts: MeasureOptions,
): Promise<{ forward: Measurement; sampling: Measurement; improver: Measurement }> {
  const cost = modelCost(policy.config);
  const improverCost = modelCost(improver.config);
  const S = policy.imageSize;
  // UNet forward: the text embedding is computed once; only the UNet is timed.
  const fb = opts.forwardBatch;
  const fwdPrompts = Array.from({ length: fb }, (_, i) => PROMPTS[i % PROMPTS.length]);
  const text = policy.encodeText(fwdPrompts);
  const xt = tf.randomNormal([fb, S, S, 3], 0, 1, "float32", 5) as tf.Tensor4D;
  const ts = Array.from({ length: fb }, (_, i) => (i * 37) % 1000);
  const forward = measurement(
    await timeIt(() => {
      const eps = policy.predictEps(xt, ts, text);
      eps.dataSync();
      eps.dispose();
    }, opts.minSeconds),
    fb,
    fb * cost.unetFlops,
  );
  tf.dispose([xt, text.tokens, text.bias]);

  // Text-to-image sampling: DDIM 20 steps with classifier-free guidance (2 UNet images per image per step).
  const steps = 20;
  const n = opts.sampleImages;
  const prompts = Array.from({ length: n }, (_, i) => PROMPTS[i % PROMPTS.length]);
  const seeds = Array.from({ length: n }, (_, i) => 100 + i);
  const sampling = measurement(
    await timeIt(
      async () => {
        await sample(policy, { prompts, seeds, steps, sampler: "ddim", guidanceScale: 3, batchSize: n });
      },
      opts.minSeconds,
      async () => {
        await sample(policy, { prompts, seeds, steps: 2, sampler: "ddim", guidanceScale: 3, batchSize: n });
      },
    ),
    n,
    n * (steps * 2 * cost.unetFlops + 2 * cost.textFlops),
  );

  // Improver: double guidance, three UNet images per image per step.
  const images = randomImages(n, S, 7);
  const improverM = measurement(
    await timeIt(
      async () => {
        await improve(improver, { images, prompts, seeds, steps, sampler: "ddim", batchSize: n });
      },
      opts.minSeconds,
      async () => {
        await improve(improver, { images, prompts, seeds, steps: 2, sampler: "ddim", batchSize: n });
      },
    ),
    n,
    n * (steps * 3 * improverCost.unetFlops + 3 * improverCost.textFlops),
  );
  return { forward, sampling, improver: improverM };
}

/** Trainer in this thread (1 worker) or DataParallelTrainer (W workers of one thread each). */
async function driver<B>(
  params: Params,
  objective: Objective<B>,
  workers: number,
): Promise<TrainingDriver<B>> {
  const config = { schedule: { lr: 1e-5 }, maxGradNorm: 1, seed: 3 };
  return workers === 1
    ? new Trainer(params, objective, config)
    : DataParallelTrainer.start(params, objective, config, { workers });
}

async function measure(opts: MeasureOptions): Promise<BackendResult> {
  const info = await initBackend({ backend: opts.backend, threads: opts.threads, log: () => {} });
  const cfg = preset("shapes16");
  const cost = modelCost(cfg);
  const policy = createModel(cfg, 1);
  const reference = cloneModel(policy, { trainable: false });
  const improver = improverFromPolicy(policy);
  const total = policy.numParams();
  if (cost.unetParams + cost.textParams !== total) {
    throw new Error(
      `bench/flops.ts walks ${cost.unetParams + cost.textParams} parameters but the model has ${total}; ` +
        "the FLOP count no longer follows unet.ts / text-encoder.ts",
    );
  }
  const loadBefore = loadavg();
  const inference = opts.trainWorkers === 1 ? await measureInference(policy, improver, opts) : undefined;
  const { training, profile } = await measureDpo(policy, reference, cost, opts);
  const { epsTraining, loadAfter } = await measureEpsTraining(policy, cost, opts);
  for (const m of [policy, reference, improver] as DiffusionModel[]) m.dispose();
  return {
    backend: info.name,
    threads: info.threads,
    ...(info.wasmBinary ? { wasmBinary: info.wasmBinary } : {}),
    preset: "shapes16",
    params: { unet: cost.unetParams, text: cost.textParams, total },
    flops: { unetForwardPerImage: cost.unetFlops, textForwardPerPrompt: cost.textFlops },
    ...(inference ?? {}),
    training,
    epsTraining,
    trainWorkers: opts.trainWorkers,
    loadBefore,
    loadAfter,
    ...(profile ? { profile } : {}),
  };
}

/**
 * Training steps run before a training figure is timed. The first steps of a trainer grow its wasm heap
 * and compile its kernels, in every worker of a data-parallel one, and took up to 4× a later step here;
 * a training job runs hundreds of steps, so the figure is of the steady state.
 */
const TRAIN_WARMUP_STEPS = 3;

async function warmUp(step: () => unknown): Promise<void> {
  for (let i = 0; i < TRAIN_WARMUP_STEPS; i++) await step();
}

/** DPO training: policy forward+backward on 2P images, frozen reference forward on 2P, AdamW. */
async function measureDpo(
  policy: DiffusionModel,
  reference: DiffusionModel,
  cost: ModelCost,
  opts: MeasureOptions,
): Promise<{ training: Measurement; profile: BackendResult["profile"] }> {
  const P = opts.trainPairs;
  const S = policy.imageSize;
  const batch: PreferenceBatch = {
    prompts: Array.from({ length: P }, (_, i) => PROMPTS[i % PROMPTS.length]),
    winners: randomImages(P, S, 8),
    losers: randomImages(P, S, 9),
  };
  const trainer = await driver(
    policy.params,
    dpoObjective(policy, reference, { beta: 1000 }),
    opts.trainWorkers,
  );
  const perImage = cost.unetFlops + cost.textFlops;
  // Forward + backward ≈ 3 forwards for the policy, 1 forward for the reference, 2 images per pair.
  const training = measurement(
    await timeIt(
      async () => {
        await trainer.step([batch]);
      },
      opts.minSeconds,
      () => warmUp(() => trainer.step([batch])),
    ),
    P,
    P * 2 * (3 * perImage + perImage),
  );
  const profile =
    opts.profile && trainer instanceof Trainer
      ? await kernelProfiles(trainer, batch, policy, opts)
      : undefined;
  await trainer.dispose();
  return { training, profile };
}

/** The top kernels of one DPO training step and of one CFG sampling step (in-process trainer only). */
async function kernelProfiles(
  trainer: TrainingDriver<PreferenceBatch>,
  batch: PreferenceBatch,
  policy: DiffusionModel,
  opts: MeasureOptions,
): Promise<NonNullable<BackendResult["profile"]>> {
  const S = policy.imageSize;
  const train = await kernelProfile(() => {
    trainer.step([batch]);
  });
  const n = opts.sampleImages;
  const prompts = Array.from({ length: n }, (_, i) => PROMPTS[i % PROMPTS.length]);
  const text2 = policy.encodeText([...prompts, ...prompts.map(() => "")]);
  const x2 = tf.randomNormal([2 * n, S, S, 3], 0, 1, "float32", 6) as tf.Tensor4D;
  const step = await kernelProfile(() => {
    policy.predictEps(x2, 500, text2).dispose();
  });
  tf.dispose([x2, text2.tokens, text2.bias]);
  return {
    trainingStep: train.slice(0, 25),
    samplingStep: step.slice(0, 25),
  };
}

/** ε-MSE training (pretraining, SFT): policy forward+backward on each image, AdamW; the load once timed. */
async function measureEpsTraining(
  policy: DiffusionModel,
  cost: ModelCost,
  opts: MeasureOptions,
): Promise<{ epsTraining: Measurement; loadAfter: number[] }> {
  const I = opts.trainImages;
  const captioned: CaptionedBatch = {
    prompts: Array.from({ length: I }, (_, i) => PROMPTS[i % PROMPTS.length]),
    images: randomImages(I, policy.imageSize, 10),
  };
  const epsTrainer = await driver(policy.params, pretrainObjective(policy), opts.trainWorkers);
  const epsTraining = measurement(
    await timeIt(
      async () => {
        await epsTrainer.step([captioned]);
      },
      opts.minSeconds,
      () => warmUp(() => epsTrainer.step([captioned])),
    ),
    I,
    I * 3 * (cost.unetFlops + cost.textFlops),
  );
  const loadAfter = loadavg();
  await epsTrainer.dispose();
  return { epsTraining, loadAfter };
}

const result = await measure(parseArgs(process.argv.slice(2)));
process.stdout.write(`BENCH_RESULT ${JSON.stringify(result)}\n`);
