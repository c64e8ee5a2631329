import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { AdamW } from "../adamw.js";
import { Ema } from "../ema.js";
import type { Params } from "../params.js";
import { OptimizerSimd } from "./optimizer-simd.js";
import { registerWasmKernels } from "./wasm-kernels.js";
import { activateWasm } from "./wasm-threaded.js";

// Sizes with and without a SIMD remainder (the .wat's scalar tail).
const SHAPES: Record<string, number[]> = { a: [3], b: [7], c: [4, 4], d: [1], e: [5, 3] };

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(0.7 * i + seed) * (1 + (i % 5)));
}

function makeParams(): Params {
  const p: Params = new Map();
  let s = 1;
  for (const [name, shape] of Object.entries(SHAPES)) {
    p.set(name, tf.variable(tf.tensor(values(tf.util.sizeFromShape(shape), s++), shape)));
  }
  return p;
}

function read(params: Params): number[][] {
  return [...params.values()].map((v) => Array.from(v.dataSync()));
}

/** Five AdamW steps (and an EMA after each) on `backend`; the weights, moments and average after each. */
async function run(backend: "cpu" | "wasm", onStep?: (params: Params, opt: AdamW) => void) {
  await tf.setBackend(backend);
  const params = makeParams();
  const opt = new AdamW(params, { weightDecay: 0.01 });
  const ema = new Ema(params, 0.9);
  const total = opt.layout.total;
  const out: { weights: number[][]; m: number[]; v: number[]; ema: number[] }[] = [];
  for (let k = 0; k < 5; k++) {
    const g = tf.tensor1d(values(total, 10 + k));
    opt.applyFlat(g, 0.01 * (k + 1));
    g.dispose();
    ema.update();
    onStep?.(params, opt);
    const st = opt.state();
    out.push({
      weights: read(params),
      m: Array.from(st.m.dataSync()),
      v: Array.from(st.v.dataSync()),
      ema: Array.from(ema.state().average.dataSync()),
    });
  }
  opt.dispose();
  ema.dispose();
  for (const v of params.values()) v.dispose();
  return out;
}

describe("AdamW and EMA in place on the wasm heap", () => {
  beforeAll(async () => {
    await activateWasm(1);
    registerWasmKernels();
  });

  it("is available on wasm and not on cpu", async () => {
    await tf.setBackend("wasm");
    expect(OptimizerSimd.active()).toBeDefined();
    await tf.setBackend("cpu");
    expect(OptimizerSimd.active()).toBeUndefined();
  });

  it("gives the same floats as the tensor ops on cpu, step by step, with the moments updated in place", async () => {
    const cpu = await run("cpu");
    let inPlace = 0;
    let last: object | undefined;
    const wasm = await run("wasm", (_params, opt) => {
      const id = opt.state().m.dataId;
      if (id === last) inPlace++;
      last = id;
    });
    expect(wasm).toEqual(cpu);
    // The first step takes the tensor ops (the fresh moments share one buffer of zeros), every later one
    // runs in place.
    expect(inPlace).toBe(4);
  });

  it("a layer sees its new weights after a step (the backend's packed copies follow a new buffer)", async () => {
    await tf.setBackend("wasm");
    const w = tf.variable(tf.tensor4d(values(3 * 3 * 4 * 8, 1), [3, 3, 4, 8]));
    const dense = tf.variable(tf.tensor2d(values(8 * 5, 2), [8, 5]));
    const params: Params = new Map<string, tf.Variable>([
      ["w", w],
      ["dense", dense],
    ]);
    const x = tf.tensor4d(values(2 * 6 * 6 * 4, 3), [2, 6, 6, 4]);
    const layer = () => tf.matMul(tf.reshape(tf.conv2d(x, w, 1, "same"), [-1, 8]), dense);
    const opt = new AdamW(params);
    const g = tf.tensor1d(values(opt.layout.total, 4));
    for (let k = 0; k < 3; k++) {
      tf.tidy(() => layer()).dispose();
      opt.applyFlat(g, 0.05);
      const got = tf.tidy(() => layer());
      const fresh = tf.tidy(() =>
        tf.matMul(
          tf.reshape(tf.conv2d(x, tf.tensor4d(w.dataSync(), w.shape), 1, "same"), [-1, 8]),
          tf.tensor2d(dense.dataSync(), [8, 5]),
        ),
      );
      expect(Array.from(got.dataSync())).toEqual(Array.from(fresh.dataSync()));
      tf.dispose([got, fresh]);
    }
    tf.dispose([x, g, w, dense]);
    opt.dispose();
  });

  it("leaves a tensor that shares a weight's data untouched (the tensor ops serve that step)", async () => {
    await tf.setBackend("wasm");
    const params = makeParams();
    const opt = new AdamW(params, { weightDecay: 0.01 });
    const g = tf.tensor1d(values(opt.layout.total, 3));
    opt.applyFlat(g, 0.01);
    const alias = tf.clone(params.get("c")!);
    const before = Array.from(alias.dataSync());
    opt.applyFlat(g, 0.01);
    expect(Array.from(alias.dataSync())).toEqual(before);
    expect(Array.from(params.get("c")!.dataSync())).not.toEqual(before);
    tf.dispose([g, alias]);
    opt.dispose();
    for (const v of params.values()) v.dispose();
  });
});
