/**
 * Test fixtures of @idpo/diffusion, for its own tests (and cross-package tests that import them by path):
 * tiny model configs, random images and weights, and the test backend. Not exported from the package index.
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend/index.js";
import type { ImageBatch } from "./image-batch.js";
import type { DiffusionConfig, DiffusionModel } from "./model.js";
import { preset } from "./presets.js";
import { Rng } from "./rng.js";

/** Selects the backend unit tests run on: initBackend's choice (IDPO_TF_BACKEND, else the automatic order). */
export async function setupTestBackend(): Promise<void> {
  await initBackend({ log: () => {} });
}

/** A very small config (S = 8, two levels, attention at 4×4) for tests that take gradients. */
export function microConfig(): DiffusionConfig {
  const cfg = preset("tiny");
  cfg.text.dim = 8;
  cfg.text.heads = 2;
  cfg.text.mlpRatio = 2;
  cfg.unet = {
    ...cfg.unet,
    imageSize: 8,
    baseChannels: 8,
    channelMult: [1, 2],
    numResBlocks: 1,
    attentionResolutions: [4],
    midAttention: true,
    groups: 2,
    timeEmbedDim: 16,
    textDim: 8,
    heads: 2,
  };
  return cfg;
}

/** The smallest useful config (S = 4, one level, no attention, no transformer layer) for long loops. */
export function nanoConfig(): DiffusionConfig {
  const cfg = microConfig();
  cfg.text.layers = 0;
  cfg.unet = {
    ...cfg.unet,
    imageSize: 4,
    baseChannels: 4,
    channelMult: [1],
    attentionResolutions: [],
    midAttention: false,
  };
  return cfg;
}

/** Overwrites every weight with N(0, scale²) noise, as a stand-in for a trained model (zero-init layers included). */
export function randomizeWeights(model: DiffusionModel, seed: number, scale = 0.2): void {
  const rng = new Rng(seed);
  for (const v of model.params.values()) {
    const data = rng.normals(v.size);
    for (let i = 0; i < data.length; i++) data[i] *= scale;
    const t = tf.tensor(data, v.shape);
    v.assign(t);
    t.dispose();
  }
}

/** n random [0, 1] images of side S. */
export function randomImages(n: number, S: number, seed: number): ImageBatch {
  const rng = new Rng(seed);
  const data = new Float32Array(n * S * S * 3);
  for (let i = 0; i < data.length; i++) data[i] = rng.next();
  return { n, height: S, width: S, channels: 3, data };
}

/** Max |a − b| over two arrays of equal length. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`maxAbsDiff: lengths ${a.length} and ${b.length} differ`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/** max |ref − got| over max |ref| (the absolute difference where ref is all zeros). */
export function maxRelativeError(ref: ArrayLike<number>, got: ArrayLike<number>): number {
  let scale = 0;
  let err = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]));
    err = Math.max(err, Math.abs(ref[i] - got[i]));
  }
  return scale === 0 ? err : err / scale;
}
