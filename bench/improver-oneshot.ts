/**
 * `npm run bench:improver`: what one pass of an improvement model does to a base model's samples, the
 * paper's one-shot fixer row, measured with idpo's own library on the held-out test prompts.
 *
 * The base samples `--samples` images per test prompt (DDIM, classifier-free guidance); the improver
 * rewrites each one with double guidance (s_T, s_I) from pure noise conditioned on it (strength 1,
 * InstructPix2Pix) and, for each `--strength` below 1, from the sample noised to that fraction of the
 * schedule (SDEdit). Every image is scored by the oracle; the report gives each reward and the paired
 * difference improved − base, with 95 % CIs over prompts.
 *
 * Options: --base FILE --improver FILE (idpo safetensors checkpoints; default the shipped shapes16 pair)
 *          --samples 8 --steps 20 --guidance 3 --s-t 3.5 --s-i 3 --strength 1,0.6 --seed 1 --out DIR
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { decodeCheckpoint, improve, initBackend, sample } from "@idpo/diffusion";
import { PRETRAINED, PRETRAINED_BASE_ID, PRETRAINED_IMPROVER_ID } from "@idpo/mesh";
import { oracleRewardValue } from "@idpo/metrics";

import { formatCI, promptCI } from "./paired-stats.js";

const shipped = (id: string) => PRETRAINED.find((p) => p.id === id)!.path;
const { values } = parseArgs({
  options: {
    base: { type: "string", default: shipped(PRETRAINED_BASE_ID) },
    improver: { type: "string", default: shipped(PRETRAINED_IMPROVER_ID) },
    samples: { type: "string", default: "8" },
    steps: { type: "string", default: "20" },
    guidance: { type: "string", default: "3" },
    "s-t": { type: "string", default: "3.5" },
    "s-i": { type: "string", default: "3" },
    strength: { type: "string", default: "1,0.6" },
    seed: { type: "string", default: "1" },
    out: { type: "string" },
  },
});

function positiveInt(name: string): number {
  const v = Number(values[name as keyof typeof values]);
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
  return v;
}
function finite(name: string): number {
  const v = Number(values[name as keyof typeof values]);
  if (!Number.isFinite(v))
    throw new Error(`--${name} must be a number, got ${values[name as keyof typeof values]}`);
  return v;
}

const samplesPerPrompt = positiveInt("samples");
const steps = positiveInt("steps");
const seed = positiveInt("seed");
const guidance = finite("guidance");
const sT = finite("s-t");
const sI = finite("s-i");
const strengths = values.strength!.split(",").map((s) => {
  const v = Number(s);
  if (!(v > 0 && v <= 1)) throw new Error(`--strength values must be in (0, 1], got ${s}`);
  return v;
});

async function main(): Promise<void> {
  await initBackend({ log: (m) => process.stderr.write(`${m}\n`) });
  const base = decodeCheckpoint(readFileSync(values.base!)).model;
  const improver = decodeCheckpoint(readFileSync(values.improver!)).model;
  if (base.kind !== "policy") throw new Error(`--base ${values.base} is not a text-to-image policy`);
  if (improver.kind !== "improver")
    throw new Error(`--improver ${values.improver} is not an improvement model`);
  const test = shapesPrompts("test").map(formatShapesPrompt);
  const prompts: string[] = [];
  const seeds: number[] = [];
  for (let i = 0; i < test.length; i++) {
    for (let j = 0; j < samplesPerPrompt; j++) {
      prompts.push(test[i]);
      seeds.push(seed * 1_000_003 + i * samplesPerPrompt + j);
    }
  }
  const t0 = performance.now();
  const progress = (what: string) => (done: number, total: number) => {
    if (done === total || done % Math.max(1, Math.floor(total / 10)) === 0)
      process.stderr.write(`  ${what}: ${done}/${total} steps\n`);
  };
  process.stderr.write(
    `base: ${prompts.length} samples (${test.length} test prompts × ${samplesPerPrompt})\n`,
  );
  const images = await sample(base, {
    prompts,
    seeds,
    steps,
    guidanceScale: guidance,
    onProgress: progress("base"),
  });
  const S = base.imageSize;
  const per = S * S * 3;
  const rewardsOf = (data: Float32Array) =>
    prompts.map((p, i) =>
      oracleRewardValue({ width: S, height: S, data: data.slice(i * per, (i + 1) * per) }, p),
    );
  const baseRewards = rewardsOf(images.data);
  const lines = [
    `# Improver one-shot on the base's samples (npm run bench:improver)`,
    "",
    `Base ${values.base}, improver ${values.improver}; ${test.length} held-out test prompts × ${samplesPerPrompt}, ` +
      `DDIM-${steps}, CFG ${guidance}, s_T ${sT}, s_I ${sI}; oracle reward, mean ± 95 % CI over prompts.`,
    "",
    "| images | test reward | Δ vs base (paired) |",
    "|---|---:|---:|",
    `| base samples | ${formatCI(promptCI(baseRewards, samplesPerPrompt))} | |`,
  ];
  for (const strength of strengths) {
    process.stderr.write(`improver, strength ${strength}\n`);
    const improved = await improve(improver, {
      images,
      prompts,
      seeds: seeds.map((s) => s + 7),
      steps,
      sT,
      sI,
      strength,
      onProgress: progress(`strength ${strength}`),
    });
    const r = rewardsOf(improved.data);
    const d = r.map((v, i) => v - baseRewards[i]);
    const label =
      strength === 1 ? "improved from noise (strength 1)" : `improved SDEdit (strength ${strength})`;
    lines.push(
      `| ${label} | ${formatCI(promptCI(r, samplesPerPrompt))} | ${formatCI(promptCI(d, samplesPerPrompt), true)} |`,
    );
  }
  lines.push("", `Wall time ${((performance.now() - t0) / 1000).toFixed(0)} s.`, "");
  const report = lines.join("\n");
  process.stdout.write(`${report}\n`);
  if (values.out) {
    const dir = resolve(values.out);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "improver-oneshot.md"), report);
  }
  base.dispose();
  improver.dispose();
}

main().catch((err) => {
  process.stderr.write(`bench:improver: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
