import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  createModel,
  type DiffusionModel,
  decodeSafetensors,
  encodeCheckpoint,
  improverFromPolicy,
  initBackend,
  preset,
} from "@idpo/diffusion";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { maxAbsDiff, randomImages, randomizeWeights } from "../libs/diffusion/src/test-fixtures.js";

// bench:parity exchanges weights with its PyTorch twin through bench/torch_twin.py's name/layout map; this
// checks that map both ways: ε of the same weights agrees, and weights written back are bit-identical.
const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = process.env.IDPO_BENCH_PYTHON ?? "/usr/bin/python3";
const hasTorch = spawnSync(PYTHON, ["-c", "import torch"], { encoding: "utf8" }).status === 0;

describe.skipIf(!hasTorch)("the PyTorch twin's weight map (bench/torch_twin.py)", () => {
  let dir: string;
  beforeAll(async () => {
    await initBackend({ log: () => {} });
    dir = mkdtempSync(join(tmpdir(), "idpo-twin-"));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function roundTrip(model: DiffusionModel, name: string, withCond: boolean): Promise<void> {
    const S = model.imageSize;
    const n = 4;
    const prompts = [
      "a small red circle on a black background",
      "",
      "a large blue square on a white background",
      "a medium green triangle on a gray background",
    ];
    const ts = [999, 500, 37, 0];
    const x = randomImages(n, S, 3);
    const xData = Float32Array.from(x.data, (v) => 2 * v - 1);
    const cond = withCond ? randomImages(n, S, 4) : undefined;
    const condData = cond ? Float32Array.from(cond.data, (v) => 2 * v - 1) : undefined;
    const tokens = model.tokenizer.encode(prompts);
    const want = tf.tidy(() =>
      model
        .predictEps(
          tf.tensor4d(xData, [n, S, S, 3]),
          ts,
          prompts,
          condData ? tf.tensor4d(condData, [n, S, S, 3]) : undefined,
        )
        .dataSync(),
    );
    const file = (f: string, data: Float32Array | Int32Array) => {
      const p = join(dir, `${name}-${f}`);
      writeFileSync(p, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return p;
    };
    const ckpt = join(dir, `${name}.safetensors`);
    const bytes = encodeCheckpoint(model, { step: 0, parent: null });
    writeFileSync(ckpt, bytes);
    const spec = {
      checkpoint: ckpt,
      n,
      t: ts,
      x: file("x.f32", xData),
      ids: file("ids.i32", tokens.ids),
      mask: file("mask.f32", tokens.mask),
      cond: condData ? file("cond.f32", condData) : undefined,
      out: join(dir, `${name}-eps.f32`),
      resave: join(dir, `${name}-resaved.safetensors`),
    };
    const specPath = join(dir, `${name}-spec.json`);
    writeFileSync(specPath, JSON.stringify(spec));
    const run = spawnSync(PYTHON, [join(here, "..", "bench", "torch_twin.py"), "eps", specPath], {
      encoding: "utf8",
    });
    expect(run.stderr).toBe("");
    expect(run.status).toBe(0);
    const got = new Float32Array(readFileSync(spec.out).buffer.slice(0));
    expect(got.length).toBe(want.length);
    let scale = 0;
    for (const v of want) scale = Math.max(scale, Math.abs(v));
    expect(scale).toBeGreaterThan(0.1);
    expect(maxAbsDiff(got, want) / scale).toBeLessThan(1e-4);
    const original = decodeSafetensors(bytes).tensors;
    const back = decodeSafetensors(readFileSync(spec.resave)).tensors;
    expect([...back.keys()]).toEqual([...original.keys()]);
    for (const [k, t] of original) {
      expect(back.get(k)!.shape).toEqual(t.shape);
      expect(maxAbsDiff(back.get(k)!.data, t.data)).toBe(0);
    }
  }

  it("the shapes16 policy: ε agrees within 1e-4 of its scale, weights come back bit-identical", async () => {
    const policy = createModel(preset("shapes16"), 7);
    randomizeWeights(policy, 11, 0.08);
    await roundTrip(policy, "policy", false);
    policy.dispose();
  });

  it("an improver (condition channels): the same both ways", async () => {
    const policy = createModel(preset("tiny"), 8);
    const improver = improverFromPolicy(policy);
    policy.dispose();
    randomizeWeights(improver, 12, 0.1);
    await roundTrip(improver, "improver", true);
    improver.dispose();
  });
});
