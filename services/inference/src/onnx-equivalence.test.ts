import {
  createModel,
  type DiffusionConfig,
  type DiffusionModel,
  disposeTextEmbedding,
  improverFromPolicy,
  preset,
  Rng,
} from "@idpo/diffusion";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OrtDiffusionModel } from "./ort-model.js";
import { hostWeights, perturbWeights, trainedModels, useTestBackend } from "./test-models.js";

/** The tolerance of the issue: max |Δ| relative to the reference output's largest magnitude. */
const REL_TOL = 1e-4;

function relErr(actual: ArrayLike<number>, reference: ArrayLike<number>): number {
  expect(actual.length).toBe(reference.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < reference.length; i++) {
    diff = Math.max(diff, Math.abs(actual[i] - reference[i]));
    scale = Math.max(scale, Math.abs(reference[i]));
  }
  // A reference of all zeros would make any error "relative"-infinite and hide nothing: refuse it.
  expect(scale).toBeGreaterThan(1e-3);
  return diff / scale;
}

/** A config with every block kind (two levels, attention down, mid and up, a 1×1 skip, 2 text layers). */
function testConfig(): DiffusionConfig {
  const cfg = preset("tiny");
  cfg.text.layers = 2;
  cfg.unet.midAttention = true;
  return cfg;
}

const PROMPTS = [
  "a small red circle on a white background",
  "",
  "a large blue square on a black background",
  "a medium green triangle on a gray background with extra words",
];

function normals(n: number, seed: number): Float32Array {
  return new Rng(seed).normals(n);
}

async function compare(model: DiffusionModel, ort: OrtDiffusionModel, seed: number) {
  const S = model.imageSize;
  const n = PROMPTS.length;
  const size = n * S * S * 3;
  const x = normals(size, seed);
  const t = [999, 500, 37, 0];
  const cond =
    model.kind === "improver" ? new Rng(seed + 1).normals(size).map((v) => Math.tanh(v)) : undefined;
  // Text encoder.
  const embRef = model.encodeText(PROMPTS);
  const tokensRef = embRef.tokens.dataSync() as Float32Array;
  const emb = await ort.encodeText(PROMPTS);
  const text = relErr(emb.tokens, tokensRef);
  // UNet ε (the text embedding of each engine feeds its own UNet).
  const epsRef = tf.tidy(() =>
    model.predictEps(
      tf.tensor4d(x, [n, S, S, 3]),
      t,
      embRef,
      cond ? tf.tensor4d(cond, [n, S, S, 3]) : undefined,
    ),
  );
  const eps = relErr(await ort.predictEps(x, t, emb, cond), epsRef.dataSync());
  epsRef.dispose();
  disposeTextEmbedding(embRef);
  return { text, eps };
}

describe("ONNX graphs vs the tfjs model", () => {
  beforeAll(useTestBackend);
  const opened: OrtDiffusionModel[] = [];
  afterAll(async () => {
    for (const m of opened) await m.release();
  });
  const open = async (model: DiffusionModel) => {
    const m = await OrtDiffusionModel.fromWeights(model.config, hostWeights(model), {
      threads: 1,
      provider: "cpu",
    });
    opened.push(m);
    return m;
  };

  it("policy and improver at random weights: text encoder and ε agree within 1e-4 relative", async () => {
    const policy = createModel(testConfig(), 1);
    perturbWeights(policy, 2);
    const improver = improverFromPolicy(policy);
    perturbWeights(improver, 3);
    for (const [model, seed] of [
      [policy, 10],
      [improver, 20],
    ] as const) {
      const r = await compare(model, await open(model), seed);
      expect(r.text).toBeLessThan(REL_TOL);
      expect(r.eps).toBeLessThan(REL_TOL);
    }
    policy.dispose();
    improver.dispose();
  }, 60_000);

  it("policy and improver at trained weights agree within 1e-4 relative", async () => {
    const { policy, improver } = trainedModels(testConfig(), 12, 4);
    for (const [model, seed] of [
      [policy, 30],
      [improver, 40],
    ] as const) {
      const r = await compare(model, await open(model), seed);
      expect(r.text).toBeLessThan(REL_TOL);
      expect(r.eps).toBeLessThan(REL_TOL);
    }
    policy.dispose();
    improver.dispose();
  }, 120_000);

  it("shapes16 (three levels, stride-2 downsampling twice) agrees within 1e-4 relative", async () => {
    const policy = createModel(preset("shapes16"), 5);
    perturbWeights(policy, 6, 0.05);
    const r = await compare(policy, await open(policy), 50);
    expect(r.text).toBeLessThan(REL_TOL);
    expect(r.eps).toBeLessThan(REL_TOL);
    policy.dispose();
  }, 120_000);
});
