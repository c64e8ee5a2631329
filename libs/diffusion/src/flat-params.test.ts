import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { FlatLayout } from "./flat-params.js";
import type { Params } from "./params.js";
import { setupTestBackend } from "./test-fixtures.js";

beforeAll(setupTestBackend);

describe("FlatLayout.readInto", () => {
  it.each(["wasm", "cpu"])("copies the parameters in layout order, as flatten does (%s)", async (backend) => {
    await tf.setBackend(backend);
    const params: Params = new Map<string, tf.Variable>([
      ["a", tf.variable(tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]))],
      ["b", tf.variable(tf.tensor1d([7]))],
      ["c", tf.variable(tf.tensor1d([8, 9]))],
    ]);
    const layout = new FlatLayout(params);
    const out = new Float32Array(layout.total);
    layout.readInto(params, out);
    expect(Array.from(out)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(() => layout.readInto(params, new Float32Array(8))).toThrow(/out has 8 values, expected 9/);
    for (const v of params.values()) v.dispose();
  });
});

describe("FlatLayout.scatterInto", () => {
  it.each(["wasm", "cpu"])(
    "writes, then adds, per-name tensors in layout order, missing names as zeros (%s)",
    async (backend) => {
      await tf.setBackend(backend);
      const params: Params = new Map<string, tf.Variable>([
        ["a", tf.variable(tf.zeros([2, 2]))],
        ["b", tf.variable(tf.zeros([1]))],
        ["c", tf.variable(tf.zeros([2]))],
      ]);
      const layout = new FlatLayout(params);
      const g1 = new Map<string, tf.Tensor>([
        ["c", tf.tensor1d([0.5, -2])],
        ["a", tf.tensor2d([1, 2, 3, 4], [2, 2])],
      ]);
      const g2 = new Map<string, tf.Tensor>([
        ["a", tf.tensor2d([10, 20, 30, 40], [2, 2])],
        ["b", tf.tensor1d([7])],
      ]);
      const out = new Float32Array(layout.total).fill(99);
      layout.scatterInto(g1, out);
      expect(Array.from(out)).toEqual([1, 2, 3, 4, 0, 0.5, -2]);
      layout.scatterInto(g2, out, true);
      expect(Array.from(out)).toEqual([11, 22, 33, 44, 7, 0.5, -2]);
      // Float32 sums, as the tensor addition they replace: 0.1 + 0.2 rounds as float32 does.
      const tenth = new Map<string, tf.Tensor>([["b", tf.tensor1d([0.2])]]);
      const one = new Float32Array(layout.total);
      one[4] = 0.1;
      layout.scatterInto(tenth, one, true);
      expect(one[4]).toBe(tf.tidy(() => tf.add(tf.scalar(0.1), tf.scalar(0.2)).dataSync()[0]));
      expect(() => layout.scatterInto(g1, new Float32Array(3))).toThrow(/out has 3 values, expected 7/);
      const wrong = new Map<string, tf.Tensor>([["b", tf.tensor1d([1, 2])]]);
      expect(() => layout.scatterInto(wrong, out)).toThrow(/b/);
      for (const t of [
        ...g1.values(),
        ...g2.values(),
        ...tenth.values(),
        ...wrong.values(),
        ...params.values(),
      ])
        t.dispose();
    },
  );
});
