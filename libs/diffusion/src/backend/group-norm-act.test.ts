import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { maxRelativeError } from "../test-fixtures.js";
import "../gradients.js";
import { groupNormAct } from "../norm.js";
import { GROUP_NORM_ACT, GROUP_NORM_ACT_GRAD } from "./kernels/group-norm-act.js";
import { registerWasmKernels } from "./wasm-kernels.js";
import { activateWasm } from "./wasm-threaded.js";

/** Deterministic values with an offset and a spread per channel, so that mean and variance matter. */
function pattern(size: number, seed: number, offset: number, spread: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++)
    out[i] = offset + spread * Math.sin(1.7 * i + 0.3 * seed) * Math.cos(0.37 * i);
  return out;
}

interface Case {
  shape: [number, number, number, number];
  groups: number;
  act: "silu" | "none";
  /** Mean of x (default 0.7); a large one against a small spread tests the variance for cancellation. */
  offset?: number;
}

const CASES: Case[] = [
  { shape: [3, 4, 5, 8], groups: 4, act: "silu" },
  { shape: [2, 8, 8, 24], groups: 8, act: "silu" },
  { shape: [2, 4, 4, 12], groups: 3, act: "none" },
  { shape: [1, 3, 3, 6], groups: 1, act: "silu" },
  { shape: [2, 2, 2, 6], groups: 6, act: "none" },
  { shape: [2, 8, 8, 48], groups: 8, act: "silu", offset: 40 },
];

/**
 * Output, and gradients of Σ output·w (w fixed) with respect to x, γ and β, on `backend`. The output is
 * the one computed under the gradient, which is where the fused kernel runs.
 */
async function evaluate(backend: "cpu" | "wasm", c: Case): Promise<Float32Array[]> {
  await tf.setBackend(backend);
  const size = tf.util.sizeFromShape(c.shape);
  const ch = c.shape[3];
  const x = tf.tensor4d(pattern(size, 1, c.offset ?? 0.7, 2.5), c.shape);
  const gamma = tf.tensor1d(pattern(ch, 2, 1, 0.5));
  const beta = tf.tensor1d(pattern(ch, 3, 0, 0.4));
  const w = tf.tensor4d(pattern(size, 4, 0.1, 1), c.shape);
  let y: tf.Tensor | undefined;
  const f = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    y = tf.keep(groupNormAct(a as tf.Tensor4D, c.groups, g, b, c.act));
    return tf.sum(tf.mul(y, w));
  };
  const grads = tf.grads(f)([x, gamma, beta]);
  if (y == null) throw new Error("the gradient did not run the forward");
  const out = [y, ...grads].map((t) => Float32Array.from(t.dataSync()));
  tf.dispose([x, gamma, beta, w, y, ...grads]);
  return out;
}

/** Names of the kernels `f` runs. */
async function kernelsOf(f: () => tf.TensorContainer): Promise<string[]> {
  const info = await tf.profile(() => f() as tf.Tensor);
  tf.dispose(info.result as tf.Tensor);
  return info.kernelNames;
}

describe("fused GroupNorm (+ SiLU) on wasm matches groupNorm and silu composed on cpu", () => {
  beforeAll(async () => {
    await activateWasm(1);
    registerWasmKernels();
  });

  it("uses the fused kernels on wasm only", () => {
    expect(tf.getKernel(GROUP_NORM_ACT, "wasm")).toBeDefined();
    expect(tf.getKernel(GROUP_NORM_ACT_GRAD, "wasm")).toBeDefined();
    expect(tf.getKernel(GROUP_NORM_ACT, "cpu")).toBeUndefined();
  });

  it("a forward alone runs the fused kernel where its passes are SIMD (channels a multiple of 4), else composes the stock kernels", async () => {
    await tf.setBackend("wasm");
    for (const [ch, fusedAlone] of [
      [8, true],
      [6, false],
    ] as const) {
      const x = tf.tensor4d(pattern(2 * 4 * 4 * ch, 1, 0.7, 2.5), [2, 4, 4, ch]);
      const gamma = tf.ones([ch]);
      const beta = tf.zeros([ch]);
      const forward = await kernelsOf(() => groupNormAct(x, 2, gamma, beta, "silu"));
      expect(forward.includes(GROUP_NORM_ACT), `${ch} channels`).toBe(fusedAlone);
      const withGrad = await kernelsOf(() =>
        tf.grad((a: tf.Tensor) => tf.sum(groupNormAct(a as tf.Tensor4D, 2, gamma, beta, "silu")))(x),
      );
      expect(withGrad).toContain(GROUP_NORM_ACT);
      expect(withGrad).toContain(GROUP_NORM_ACT_GRAD);
      tf.dispose([x, gamma, beta]);
    }
  });

  it.each(CASES)("forward, dx, dγ, dβ within 1e-4: $shape groups=$groups act=$act", async (c) => {
    const cpu = await evaluate("cpu", c);
    const wasm = await evaluate("wasm", c);
    const names = ["y", "dx", "dγ", "dβ"];
    for (let i = 0; i < cpu.length; i++) {
      expect(wasm[i].length, names[i]).toBe(cpu[i].length);
      expect(maxRelativeError(cpu[i], wasm[i]), names[i]).toBeLessThan(1e-4);
    }
  });

  it("a constant group normalises to β (variance clamped at zero) and its gradient stays finite", async () => {
    await tf.setBackend("wasm");
    const x = tf.fill([1, 2, 2, 4], 3) as tf.Tensor4D;
    const gamma = tf.tensor1d([1, 2, 3, 4]);
    const beta = tf.tensor1d([0.5, -0.5, 0.25, 0]);
    const y = groupNormAct(x, 2, gamma, beta, "none");
    expect(Array.from(y.dataSync().slice(0, 4))).toEqual([0.5, -0.5, 0.25, 0]);
    const dx = tf.grad((a: tf.Tensor) => tf.sum(groupNormAct(a as tf.Tensor4D, 2, gamma, beta, "silu")))(x);
    expect(dx.dataSync().every(Number.isFinite)).toBe(true);
    tf.dispose([x, gamma, beta, y, dx]);
  });

  it("leaves no tensors or buffers behind (forward and gradient)", async () => {
    const c = CASES[1];
    await evaluate("wasm", c);
    const tensors = tf.memory().numTensors;
    const buffers = tf.engine().backend.numDataIds();
    for (let i = 0; i < 3; i++) await evaluate("wasm", c);
    expect(tf.memory().numTensors).toBe(tensors);
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
  });

  it("rejects γ of the wrong width, with or without a gradient", async () => {
    await tf.setBackend("wasm");
    const x = tf.zeros([1, 2, 2, 4]) as tf.Tensor4D;
    const gamma = tf.ones([3]);
    const beta = tf.zeros([4]);
    expect(() => groupNormAct(x, 2, gamma, beta, "silu")).toThrow(/γ \[3\] and β \[4\] must be \[4\]/);
    expect(() =>
      tf.grad((a: tf.Tensor) => tf.sum(groupNormAct(a as tf.Tensor4D, 2, gamma, beta, "silu")))(x),
    ).toThrow(/must be \[4\]/);
    tf.dispose([x, gamma, beta]);
  });
});
