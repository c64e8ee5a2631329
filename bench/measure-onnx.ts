/**
 * The inference sidecar's engine for `npm run bench`: the shapes16 policy and improver as ONNX graphs
 * (services/inference) on onnxruntime-node's CPU provider with N intra-op threads, timed on the same
 * workloads as bench/measure.ts's inference figures (UNet forward, DDIM-20 + CFG sampling, double-
 * guidance improver sampling). run.ts starts it in a child process per thread count; it prints one line
 * `BENCH_RESULT <json>`. The engine is timed in process: a sidecar call adds one loopback round trip per
 * request (images of 3 KB each), not per step.
 *
 * Usage: tsx bench/measure-onnx.ts --threads N [--forward-batch 32] [--sample-images 32] [--min-seconds 4]
 */
import { loadavg } from "node:os";
import {
  createModel,
  type DiffusionModel,
  improverFromPolicy,
  initBackend,
  preset,
  Rng,
} from "@idpo/diffusion";
import { OrtDiffusionModel, ortImprove, ortSample, type Weights } from "@idpo/inference";
import * as ort from "onnxruntime-node";
import { modelCost } from "./flops.js";
import type { BackendResult } from "./measure.js";
import { measurement, timeIt } from "./timing.js";

const PROMPTS = [
  "a small red circle on a black background",
  "a large blue square on a white background",
  "a medium green triangle on a navy background",
  "a large yellow circle on a gray background",
];

interface Options {
  threads: number;
  forwardBatch: number;
  sampleImages: number;
  minSeconds: number;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { threads: 2, forwardBatch: 32, sampleImages: 32, minSeconds: 4 };
  const keys: Record<string, keyof Options> = {
    "--threads": "threads",
    "--forward-batch": "forwardBatch",
    "--sample-images": "sampleImages",
    "--min-seconds": "minSeconds",
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = keys[argv[i]];
    const v = Number(argv[i + 1]);
    if (!key) throw new Error(`bench/measure-onnx: unknown argument ${argv[i]}`);
    if (!(v > 0))
      throw new Error(`bench/measure-onnx: ${argv[i]} needs a positive number, got ${argv[i + 1]}`);
    opts[key] = v;
  }
  return opts;
}

function weightsOf(model: DiffusionModel): Weights {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, v] of model.params)
    out.set(name, { shape: [...v.shape], data: v.dataSync() as Float32Array });
  return out;
}

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  // tfjs only creates the weights (same seed as bench/measure.ts); ONNX Runtime runs them.
  await initBackend({ backend: "cpu", log: () => {} });
  const cfg = preset("shapes16");
  const cost = modelCost(cfg);
  const policyTf = createModel(cfg, 1);
  const improverTf = improverFromPolicy(policyTf);
  const improverCost = modelCost(improverTf.config);
  const ortOpts = { threads: opts.threads, provider: "cpu" as const };
  const policy = await OrtDiffusionModel.fromWeights(cfg, weightsOf(policyTf), ortOpts);
  const improver = await OrtDiffusionModel.fromWeights(improverTf.config, weightsOf(improverTf), ortOpts);
  const S = cfg.unet.imageSize;
  const loadBefore = loadavg();

  const fb = opts.forwardBatch;
  const text = await policy.encodeText(Array.from({ length: fb }, (_, i) => PROMPTS[i % PROMPTS.length]));
  const xt = new Rng(5).normals(fb * S * S * 3);
  const ts = Array.from({ length: fb }, (_, i) => (i * 37) % 1000);
  const forward = measurement(
    await timeIt(async () => {
      await policy.predictEps(xt, ts, text);
    }, opts.minSeconds),
    fb,
    fb * cost.unetFlops,
  );

  const steps = 20;
  const n = opts.sampleImages;
  const prompts = Array.from({ length: n }, (_, i) => PROMPTS[i % PROMPTS.length]);
  const seeds = Array.from({ length: n }, (_, i) => 100 + i);
  const sampleOpts = { prompts, seeds, sampler: "ddim" as const, guidanceScale: 3, batchSize: n };
  const sampling = measurement(
    await timeIt(
      async () => {
        await ortSample(policy, { ...sampleOpts, steps });
      },
      opts.minSeconds,
      async () => {
        await ortSample(policy, { ...sampleOpts, steps: 2 });
      },
    ),
    n,
    n * (steps * 2 * cost.unetFlops + 2 * cost.textFlops),
  );
  const rng = new Rng(7);
  const data = new Float32Array(n * S * S * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.next();
  const images = { n, height: S, width: S, channels: 3 as const, data };
  const improveOpts = { images, prompts, seeds, sampler: "ddim" as const, batchSize: n };
  const improverM = measurement(
    await timeIt(
      async () => {
        await ortImprove(improver, { ...improveOpts, steps });
      },
      opts.minSeconds,
      async () => {
        await ortImprove(improver, { ...improveOpts, steps: 2 });
      },
    ),
    n,
    n * (steps * 3 * improverCost.unetFlops + 3 * improverCost.textFlops),
  );
  const result: Omit<BackendResult, "training" | "epsTraining"> = {
    backend: `onnxruntime-node ${ort.env.versions.node ?? "?"} (cpu)`,
    threads: opts.threads,
    preset: "shapes16",
    params: { unet: cost.unetParams, text: cost.textParams, total: cost.unetParams + cost.textParams },
    flops: { unetForwardPerImage: cost.unetFlops, textForwardPerPrompt: cost.textFlops },
    forward,
    sampling,
    improver: improverM,
    trainWorkers: 0,
    loadBefore,
    loadAfter: loadavg(),
  };
  await policy.release();
  await improver.release();
  console.log(`BENCH_RESULT ${JSON.stringify(result)}`);
}

await main();
