import { DataRng, renderDegraded, renderIdeal } from "@idpo/data";
import {
  createModel,
  type DiffusionConfig,
  type DiffusionModel,
  type ImageBatch,
  improverFromPolicy,
  improverObjective,
  initBackend,
  pretrainObjective,
  Rng,
  type SafetensorsTensor,
  Trainer,
} from "@idpo/diffusion";
import * as tf from "@tensorflow/tfjs-core";

/** The reference engine for the tests: single-threaded tfjs wasm (deterministic). */
export async function useTestBackend(): Promise<void> {
  await initBackend({ backend: "wasm", threads: 1, log: () => {} });
}

/** A model's weights as host arrays (what a checkpoint holds). */
export function hostWeights(model: DiffusionModel): Map<string, SafetensorsTensor> {
  const out = new Map<string, SafetensorsTensor>();
  for (const [name, v] of model.params)
    out.set(name, { shape: [...v.shape], data: v.dataSync() as Float32Array });
  return out;
}

/** Adds N(0, scale²) to every weight, zero-initialised layers included, so every path carries signal. */
export function perturbWeights(model: DiffusionModel, seed: number, scale = 0.2): void {
  const rng = new Rng(seed, 11);
  for (const v of model.params.values()) {
    const cur = v.dataSync() as Float32Array;
    const next = rng.normals(cur.length);
    for (let i = 0; i < cur.length; i++) next[i] = cur[i] + scale * next[i];
    const t = tf.tensor(next, v.shape);
    v.assign(t);
    t.dispose();
  }
}

const PROMPTS = ["a small red circle on a white background", "a large blue square on a black background"];

function batchOf(images: { data: Float32Array }[], S: number): ImageBatch {
  const data = new Float32Array(images.length * S * S * 3);
  for (let i = 0; i < images.length; i++) data.set(images[i].data, i * S * S * 3);
  return { n: images.length, height: S, width: S, channels: 3, data };
}

/**
 * A policy and an improver trained for a few AdamW steps on shapes-world images (the policy on ideal
 * renders, the improver on degraded → ideal pairs), so that every weight, zero-initialised ones
 * included, has moved the way training moves it.
 */
export function trainedModels(
  config: DiffusionConfig,
  steps: number,
  seed: number,
): { policy: DiffusionModel; improver: DiffusionModel } {
  const S = config.unet.imageSize;
  const policy = createModel(config, seed);
  const ideal = batchOf(
    PROMPTS.map((p) => renderIdeal(p, S)),
    S,
  );
  const opts = { schedule: { lr: 3e-3 }, seed };
  const pt = new Trainer(policy.params, pretrainObjective(policy, 0.2), opts);
  for (let s = 0; s < steps; s++) pt.step([{ prompts: PROMPTS, images: ideal }]);
  pt.dispose();
  const improver = improverFromPolicy(policy);
  const rng = new DataRng(seed);
  const degraded = batchOf(
    PROMPTS.map((p) => renderDegraded(p, S, 0.8, rng).image),
    S,
  );
  const it = new Trainer(improver.params, improverObjective(improver), opts);
  for (let s = 0; s < steps; s++) it.step([{ prompts: PROMPTS, winners: ideal, losers: degraded }]);
  it.dispose();
  return { policy, improver };
}
