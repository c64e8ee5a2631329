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
