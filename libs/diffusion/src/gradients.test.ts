import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { GRADIENT_KERNELS } from "./gradients.js";
import { Rng } from "./rng.js";
import { setupTestBackend } from "./test-fixtures.js";

beforeAll(setupTestBackend);

/**
 * Checks tf.grad of a scalar function against central differences at a few coordinates.
 * Functions are built to have O(1) curvature so float32 differences with h = 1e-2 are accurate to ~1e-3.
 */
function checkGrad(f: (x: tf.Tensor) => tf.Tensor, shape: number[], seed: number, positive = false): void {
  const rng = new Rng(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  const x0 = new Float32Array(n);
  for (let i = 0; i < n; i++) x0[i] = positive ? 0.5 + rng.next() : rng.normal();
  const w = weights(f, x0, shape);
  const scalar = (x: tf.Tensor) => tf.sum(tf.mul(f(x), tf.tensor(w.data, w.shape)));
  const g = tf.tidy(() => tf.grad(scalar)(tf.tensor(x0, shape)).dataSync());
  const h = 1e-2;
  const coords = [0, Math.floor(n / 2), n - 1];
  for (const i of coords) {
    const plus = Float32Array.from(x0);
    const minus = Float32Array.from(x0);
    plus[i] += h;
    minus[i] -= h;
    const fp = tf.tidy(() => scalar(tf.tensor(plus, shape)).dataSync()[0]);
    const fm = tf.tidy(() => scalar(tf.tensor(minus, shape)).dataSync()[0]);
    const fd = (fp - fm) / (2 * h);
    expect(Math.abs(g[i] - fd)).toBeLessThan(2e-3 * Math.max(1, Math.abs(fd)));
  }
}

/** Fixed random output weights so the checked scalar depends on every output element differently. */
function weights(
  f: (x: tf.Tensor) => tf.Tensor,
  x0: Float32Array,
  shape: number[],
): { data: Float32Array; shape: number[] } {
  const y = tf.tidy(() => f(tf.tensor(x0, shape)));
  const w = { data: new Rng(99).normals(y.size), shape: [...y.shape] };
  y.dispose();
  return w;
}

describe("registered gradients match finite differences", () => {
  const other = (seed: number, shape: number[]) =>
    tf.tensor(new Rng(seed).normals(shape.reduce((a, b) => a * b, 1)), shape);
  const cases: [string, (x: tf.Tensor) => tf.Tensor, number[], boolean?][] = [
    ["Add (broadcast)", (x) => tf.add(x, other(1, [3])), [2, 3]],
    ["Add (broadcast other way)", (x) => tf.add(other(1, [2, 3]), x), [3]],
    ["Sub", (x) => tf.sub(other(2, [2, 3]), x), [1, 3]],
    ["Multiply", (x) => tf.mul(x, other(3, [2, 3])), [2, 3]],
    ["RealDiv", (x) => tf.div(other(4, [2, 3]), x), [2, 3], true],
    ["SquaredDifference", (x) => tf.squaredDifference(x, other(5, [2, 3])), [2, 3]],
    ["Maximum", (x) => tf.maximum(x, other(6, [2, 3])), [2, 3]],
    ["Minimum", (x) => tf.minimum(x, other(6, [2, 3])), [2, 3]],
    ["Neg", (x) => tf.neg(x), [4]],
    ["Square", (x) => tf.square(x), [4]],
    ["Sqrt", (x) => tf.sqrt(x), [4], true],
    ["Rsqrt", (x) => tf.rsqrt(x), [4], true],
    ["Exp", (x) => tf.exp(x), [4]],
    ["Log", (x) => tf.log(x), [4], true],
    ["Log1p", (x) => tf.log1p(x), [4], true],
    ["Sigmoid", (x) => tf.sigmoid(x), [4]],
    ["Tanh", (x) => tf.tanh(x), [4]],
    ["Softplus", (x) => tf.softplus(x), [4]],
    ["Abs", (x) => tf.abs(x), [4], true],
    ["Relu", (x) => tf.relu(tf.sub(x, 1)), [4], true],
    ["Pow", (x) => tf.pow(x, tf.scalar(3)), [4], true],
    ["Reshape", (x) => tf.mul(tf.reshape(x, [3, 2]), other(7, [3, 2])), [2, 3]],
    ["ExpandDims", (x) => tf.mul(tf.expandDims(x, 1), other(8, [2, 1, 3])), [2, 3]],
    ["Transpose", (x) => tf.mul(tf.transpose(x, [2, 0, 1]), other(9, [4, 2, 3])), [2, 3, 4]],
    ["Concat", (x) => tf.concat([x, tf.square(x)], 1), [2, 3]],
    ["SplitV", (x) => tf.mul(tf.split(x, [1, 2], 1)[1], 3), [2, 3]],
    ["Slice", (x) => tf.slice(x, [0, 1], [2, 2]), [2, 3]],
    ["Tile", (x) => tf.tile(x, [2, 3]), [2, 2]],
    ["Mean", (x) => tf.mean(tf.square(x), [0, 2], true), [2, 3, 2]],
    ["Sum", (x) => tf.sum(tf.square(x), 1), [2, 3]],
    ["Softmax", (x) => tf.softmax(x), [2, 4]],
    ["BatchMatMul", (x) => tf.matMul(x, other(10, [2, 3, 2])), [2, 4, 3]],
    ["BatchMatMul transposed", (x) => tf.matMul(other(11, [2, 3, 4]), x, true, true), [2, 5, 3]],
    [
      "Conv2D",
      (x) => tf.conv2d(x as tf.Tensor4D, other(12, [3, 3, 2, 3]) as tf.Tensor4D, 1, "same"),
      [1, 4, 4, 2],
    ],
    [
      "Conv2D filter, stride 2",
      (w) => tf.conv2d(other(13, [1, 5, 5, 2]) as tf.Tensor4D, w as tf.Tensor4D, 2, "same"),
      [3, 3, 2, 2],
    ],
    [
      "PadV2",
      (x) =>
        tf.pad(x, [
          [1, 0],
          [0, 2],
        ]),
      [2, 2],
    ],
    ["Cast", (x) => tf.cast(x, "float32"), [3]],
  ];
  for (const [name, f, shape, positive] of cases) {
    it(name, () => checkGrad(f, shape, name.length, positive));
  }

  it("covers every kernel it registers", () => {
    const tested = new Set(cases.map(([name]) => name.split(" ")[0]));
    for (const k of GRADIENT_KERNELS) if (k !== "Identity") expect(tested).toContain(k);
  });
});
