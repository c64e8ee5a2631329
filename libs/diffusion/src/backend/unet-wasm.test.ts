import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { dpoLoss } from "../dpo-loss.js";
import "../gradients.js";
import { createModel, improverFromPolicy } from "../model.js";
import { Rng } from "../rng.js";
import { microConfig, randomImages, randomizeWeights } from "../test-fixtures.js";
import { registerWasmKernels } from "./wasm-kernels.js";
import { activateWasm } from "./wasm-threaded.js";

type Grads = Map<string, Float32Array>;

/** Gradients of `loss` with respect to every variable, computed on `backend`. */
async function gradsOn(backend: "cpu" | "wasm", vars: tf.Variable[], loss: () => tf.Scalar): Promise<Grads> {
  await tf.setBackend(backend);
  const { value, grads } = tf.variableGrads(loss, vars);
  const out: Grads = new Map();
  for (const [name, g] of Object.entries(grads)) out.set(name, Float32Array.from(g.dataSync()));
  tf.dispose([value, ...Object.values(grads)]);
  return out;
}

/**
 * Largest relative gradient difference over all variables: per variable max |wasm − cpu| divided by
 * that variable's max |cpu| (floored at `floor` times the largest gradient so that near-zero
 * gradients compare on the model's scale).
 */
function worstRelative(cpu: Grads, wasm: Grads, floor = 1e-3): { worst: number; name: string } {
  let global = 0;
  for (const g of cpu.values()) for (const v of g) global = Math.max(global, Math.abs(v));
  let worst = 0;
  let name = "";
  for (const [key, g] of cpu) {
    const w = wasm.get(key);
    if (w == null) throw new Error(`wasm produced no gradient for ${key}`);
    let scale = floor * global;
    let err = 0;
    for (let i = 0; i < g.length; i++) {
      scale = Math.max(scale, Math.abs(g[i]));
      err = Math.max(err, Math.abs(g[i] - w[i]));
    }
    if (err / scale > worst) {
      worst = err / scale;
      name = key;
    }
  }
  return { worst, name };
}

describe("the UNet and text encoder train on wasm with the cpu backend's gradients", () => {
  beforeAll(async () => {
    await activateWasm(2);
    registerWasmKernels();
  });

  it("ε-MSE gradients of every weight match cpu within 1e-4", async () => {
    await tf.setBackend("cpu");
    const model = createModel(microConfig(), 11);
    randomizeWeights(model, 12);
    const n = 3;
    const S = model.imageSize;
    const rng = new Rng(13);
    const x = rng.normals(n * S * S * 3);
    const target = rng.normals(n * S * S * 3);
    const prompts = [
      "a small red circle on a black background",
      "",
      "a large blue square on a white background",
    ];
    const loss = () =>
      tf.tidy(() => {
        const eps = model.predictEps(tf.tensor4d(x, [n, S, S, 3]), [5, 500, 999], prompts);
        return tf.mean(tf.square(tf.sub(eps, tf.tensor4d(target, [n, S, S, 3])))) as tf.Scalar;
      });
    const vars = [...model.params.values()];
    const cpu = await gradsOn("cpu", vars, loss);
    const wasm = await gradsOn("wasm", vars, loss);
    expect(cpu.size).toBe(model.params.size);
    const { worst, name } = worstRelative(cpu, wasm);
    expect(worst, `worst variable ${name}`).toBeLessThan(1e-4);
    model.dispose();
  });

  it("Diffusion-DPO gradients (policy vs frozen reference) of an improver-shaped UNet match cpu", async () => {
    await tf.setBackend("cpu");
    const policy = createModel(microConfig(), 21);
    randomizeWeights(policy, 22);
    const reference = createModel(microConfig(), 23, { trainable: false });
    randomizeWeights(reference, 24);
    const S = policy.imageSize;
    const batch = {
      prompts: ["a small red circle on a black background", "a medium green triangle on a navy background"],
      winners: randomImages(2, S, 25),
      losers: randomImages(2, S, 26),
    };
    const loss = () => {
      const out = dpoLoss(policy, reference, batch, new Rng(27), { beta: 50 });
      const value = out.loss;
      for (const [key, m] of Object.entries(out.metrics)) if (m !== value && key !== "loss") m.dispose();
      return value;
    };
    const vars = [...policy.params.values()];
    const cpu = await gradsOn("cpu", vars, loss);
    const wasm = await gradsOn("wasm", vars, loss);
    // A DPO gradient is the difference of the winner's and the loser's ε-MSE gradients (shared t and
    // ε), so where they nearly cancel float32 summation order shows; compare each weight on the
    // model-wide gradient scale.
    const { worst, name } = worstRelative(cpu, wasm, 1);
    expect(worst, `worst variable ${name}`).toBeLessThan(1e-4);
    // The improver (extra condition channels) runs forward on wasm too.
    await tf.setBackend("wasm");
    const improver = improverFromPolicy(policy);
    const eps = tf.tidy(() =>
      improver.predictEps(
        tf.zeros([1, S, S, 3]),
        10,
        ["a small red circle on a black background"],
        tf.ones([1, S, S, 3]),
      ),
    );
    expect(eps.shape).toEqual([1, S, S, 3]);
    tf.dispose([eps]);
    improver.dispose();
    policy.dispose();
    reference.dispose();
  });
});
