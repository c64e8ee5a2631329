/**
 * `npm run bench:learning`: how fast a model learns to follow its prompt, ours (tfjs) next to the same
 * architecture in PyTorch. Both train on two prompts that differ only in the background ("… on a white
 * background" / "… on a black background", ideal renders), with the same recipe (AdamW, warmup, clipping,
 * prompt dropout), and every `--every` steps sample both prompts from the same noise (DDIM, no guidance).
 * The figure is the separation: the mean of the sample's top row for the white prompt minus that for the
 * black one (1 when both backgrounds are right, 0 when the prompt is ignored).
 *
 * This separates "our kernels or training loop are wrong" from "this model and recipe are slow": if both
 * columns move together, the implementation is not the bottleneck.
 *
 * Options: --preset tiny|shapes16 (default tiny)  --steps N (default 2000)  --every N (default 250)
 *          --lr X (default 2e-3)  --threads N (default 1)  --seed N (default 1)  --only tfjs|torch
 * Environment: IDPO_BENCH_PYTHON overrides the interpreter of the PyTorch side.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { renderIdeal } from "@idpo/data";
import {
  createModel,
  initBackend,
  type PresetName,
  preset,
  pretrainObjective,
  Rng,
  sample,
  Tokenizer,
  Trainer,
} from "@idpo/diffusion";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.IDPO_BENCH_PYTHON ?? "/usr/bin/python3";
const PROMPTS = ["a large red circle on a white background", "a large red circle on a black background"];

const { values } = parseArgs({
  options: {
    preset: { type: "string", default: "tiny" },
    steps: { type: "string", default: "2000" },
    every: { type: "string", default: "250" },
    lr: { type: "string", default: "2e-3" },
    threads: { type: "string", default: "1" },
    seed: { type: "string", default: "1" },
    only: { type: "string" },
  },
});
const presetName = values.preset as PresetName;
const steps = Number(values.steps);
const every = Number(values.every);
const lr = Number(values.lr);
const threads = Number(values.threads);
const seed = Number(values.seed);
if (values.only !== undefined && values.only !== "tfjs" && values.only !== "torch")
  throw new Error(`--only must be tfjs or torch, got ${values.only}`);
for (const [k, v] of Object.entries({ steps, every, threads, seed })) {
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer, got ${v}`);
}
if (!(lr > 0 && lr < 1)) throw new Error(`--lr must be in (0, 1), got ${values.lr}`);

const cfg = preset(presetName);
const size = cfg.unet.imageSize;
const recipe = {
  steps,
  every,
  lr,
  warmupSteps: 20,
  batchSize: 32,
  promptDropout: 0.1,
  sampleSteps: 20,
  seed,
};

/** Top-row mean of image i of a [0, 1] batch. */
function border(data: Float32Array, i: number): number {
  let s = 0;
  for (let x = 0; x < size * 3; x++) s += data[i * size * size * 3 + x];
  return s / (size * 3);
}

async function torchSide(): Promise<Map<number, number>> {
  const dir = mkdtempSync(join(tmpdir(), "idpo-learning-probe-"));
  const tok = new Tokenizer(cfg.text.vocab, cfg.text.maxLength).encode([...PROMPTS, ""]);
  const spec = join(dir, "spec.json");
  writeFileSync(
    spec,
    JSON.stringify({
      ...recipe,
      threads,
      text: { ...cfg.text, vocabSize: cfg.text.vocab.length },
      unet: cfg.unet,
      ids: Array.from(tok.ids),
      mask: Array.from(tok.mask),
      images: PROMPTS.map((p) => Array.from(renderIdeal(p, size).data)),
    }),
  );
  const out = new Map<number, number>();
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(PYTHON, [join(here, "torch_learning_probe.py"), spec], {
        stdio: ["ignore", "pipe", "inherit"],
      });
      let buf = "";
      child.stdout.on("data", (d: Buffer) => {
        buf += d.toString();
        for (let nl = buf.indexOf("\n"); nl >= 0; nl = buf.indexOf("\n")) {
          const r = JSON.parse(buf.slice(0, nl)) as { step: number; border: number[] };
          buf = buf.slice(nl + 1);
          out.set(r.step, r.border[0] - r.border[1]);
          process.stderr.write(
            `  torch step ${r.step}: separation ${(r.border[0] - r.border[1]).toFixed(3)}\n`,
          );
        }
      });
      child.on("error", reject);
      child.on("exit", (code) =>
        code === 0 ? resolve() : reject(new Error(`${PYTHON} exited with ${code}`)),
      );
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return out;
}

async function tfjsSide(): Promise<Map<number, number>> {
  await initBackend({ threads, log: () => {} });
  const model = createModel(cfg, recipe.seed);
  const data = new Float32Array(PROMPTS.length * size * size * 3);
  for (let i = 0; i < PROMPTS.length; i++) data.set(renderIdeal(PROMPTS[i], size).data, i * size * size * 3);
  const rng = new Rng(recipe.seed);
  const trainer = new Trainer(model.params, pretrainObjective(model, recipe.promptDropout), {
    schedule: { lr, warmupSteps: recipe.warmupSteps },
    adam: { weightDecay: 0 },
    seed: recipe.seed,
  });
  const out = new Map<number, number>();
  const n = recipe.batchSize;
  for (let step = 1; step <= steps; step++) {
    const prompts: string[] = [];
    const images = new Float32Array(n * size * size * 3);
    for (let i = 0; i < n; i++) {
      const k = rng.int(PROMPTS.length);
      prompts.push(PROMPTS[k]);
      images.set(data.subarray(k * size * size * 3, (k + 1) * size * size * 3), i * size * size * 3);
    }
    trainer.step([{ prompts, images: { n, height: size, width: size, channels: 3, data: images } }]);
    if (step % every === 0) {
      const s = await sample(model, {
        prompts: PROMPTS,
        seeds: PROMPTS.map(() => 5),
        guidanceScale: 1,
        steps: recipe.sampleSteps,
      });
      const sep = border(s.data, 0) - border(s.data, 1);
      out.set(step, sep);
      process.stderr.write(`  tfjs step ${step}: separation ${sep.toFixed(3)}\n`);
    }
  }
  return out;
}

process.stderr.write(
  `learning probe: preset ${presetName}, ${steps} steps of ${recipe.batchSize} images, lr ${lr}, ${threads} thread(s)\n`,
);
const ours = values.only === "torch" ? new Map<number, number>() : await tfjsSide();
const torch =
  values.only === "tfjs"
    ? new Map<number, number>()
    : await torchSide().catch((err: Error) => {
        process.stderr.write(`  PyTorch side skipped: ${err.message}\n`);
        return new Map<number, number>();
      });
console.log("\n| step | separation, ours (tfjs) | separation, PyTorch |");
console.log("| ---: | ---: | ---: |");
for (let step = every; step <= steps; step += every) {
  const fmt = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(3));
  console.log(`| ${step} | ${fmt(ours.get(step))} | ${fmt(torch.get(step))} |`);
}
