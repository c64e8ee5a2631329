import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { beforeAll, describe, expect, it } from "vitest";
import { registerWasmKernels } from "./wasm-kernels.js";
import { activateWasm } from "./wasm-threaded.js";

interface Input {
  shape: number[];
  dtype?: "float32" | "int32";
  /** Explicit values; default a deterministic pseudo-random pattern in [-1, 1]. */
  values?: number[];
}

/** Deterministic values that are neither symmetric nor small integers (so layout errors show). */
function pattern(size: number, seed: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = Math.sin(1.7 * i + 0.3 * seed) * Math.cos(0.37 * i * seed + 1);
  return out;
}

/** Runs `kernel` on `backend` and returns its output's shape and values (every tensor disposed). */
async function runOn(
  backend: "cpu" | "wasm",
  kernel: string,
  inputs: Record<string, Input> | Input[],
  attrs: Record<string, unknown>,
): Promise<{ shape: number[]; values: Float32Array }> {
  await tf.setBackend(backend);
  const make = (inp: Input, seed: number) => {
    const size = tf.util.sizeFromShape(inp.shape);
    const values = inp.values ?? Array.from(pattern(size, seed));
    return tf.tensor(values, inp.shape, inp.dtype ?? "float32");
  };
  const tensors = Array.isArray(inputs)
    ? inputs.map((inp, i) => make(inp, i + 1))
    : Object.fromEntries(Object.entries(inputs).map(([name, inp], i) => [name, make(inp, i + 1)]));
  const result = tf.engine().runKernel(kernel, tensors as never, attrs as never) as tf.Tensor | tf.Tensor[];
  // Multi-output kernels (SplitV) compare as their outputs' shapes and values laid end to end.
  const outs = Array.isArray(result) ? result : [result];
  const shape = outs.length === 1 ? outs[0].shape : outs.flatMap((o) => [...o.shape, -1]);
  const values = Float32Array.from(outs.flatMap((o) => Array.from(o.dataSync())));
  tf.dispose([...outs, ...Object.values(tensors)]);
  return { shape, values };
}

/** max |wasm − cpu| / max |cpu| (0 when both are all zero). */
async function relativeError(
  kernel: string,
  inputs: Record<string, Input> | Input[],
  attrs: Record<string, unknown>,
): Promise<number> {
  const cpu = await runOn("cpu", kernel, inputs, attrs);
  const wasm = await runOn("wasm", kernel, inputs, attrs);
  expect(wasm.shape).toEqual(cpu.shape);
  let scale = 0;
  let err = 0;
  for (let i = 0; i < cpu.values.length; i++) {
    scale = Math.max(scale, Math.abs(cpu.values[i]));
    err = Math.max(err, Math.abs(cpu.values[i] - wasm.values[i]));
  }
  return scale === 0 ? err : err / scale;
}

/** Runs the wasm kernel repeatedly and checks that no tensor and no backend buffer is left behind. */
async function expectNoLeak(
  kernel: string,
  inputs: Record<string, Input> | Input[],
  attrs: Record<string, unknown>,
): Promise<void> {
  await runOn("wasm", kernel, inputs, attrs);
  const tensors = tf.memory().numTensors;
  const buffers = tf.engine().backend.numDataIds();
  for (let i = 0; i < 4; i++) await runOn("wasm", kernel, inputs, attrs);
  expect(tf.memory().numTensors).toBe(tensors);
  expect(tf.engine().backend.numDataIds()).toBe(buffers);
}

interface ConvCase {
  x: [number, number, number, number];
  k: [number, number];
  cin: number;
  cout: number;
  stride: number | [number, number];
  pad: "same" | "valid" | number | [[0, 0], [number, number], [number, number], [0, 0]];
}

const CONV_CASES: ConvCase[] = [
  { x: [2, 8, 8, 3], k: [3, 3], cin: 3, cout: 5, stride: 1, pad: "same" },
  { x: [2, 8, 8, 3], k: [3, 3], cin: 3, cout: 5, stride: 2, pad: "same" },
  { x: [2, 9, 7, 4], k: [3, 3], cin: 4, cout: 6, stride: 2, pad: "same" },
  { x: [2, 9, 7, 4], k: [3, 3], cin: 4, cout: 6, stride: 2, pad: "valid" },
  { x: [3, 6, 6, 8], k: [1, 1], cin: 8, cout: 4, stride: 1, pad: "same" },
  { x: [1, 10, 11, 2], k: [4, 2], cin: 2, cout: 3, stride: [3, 2], pad: "valid" },
  { x: [1, 10, 10, 2], k: [4, 4], cin: 2, cout: 3, stride: 3, pad: "same" },
  {
    x: [2, 7, 7, 3],
    k: [3, 3],
    cin: 3,
    cout: 2,
    stride: 2,
    pad: [
      [0, 0],
      [2, 0],
      [1, 3],
      [0, 0],
    ],
  },
];

function convOutShape(c: ConvCase): number[] {
  const info = tf.backend_util.computeConv2DInfo(
    c.x,
    [c.k[0], c.k[1], c.cin, c.cout],
    c.stride,
    1,
    c.pad as never,
  );
  return info.outShape;
}

describe("idpo wasm kernels match the cpu backend", () => {
  beforeAll(async () => {
    await activateWasm(2);
    registerWasmKernels();
  });

  it("loads the threaded binary with two XNNPACK threads", () => {
    expect(tf.getBackend()).toBe("wasm");
  });

  it.each(CONV_CASES)("Conv2DBackpropFilter x=$x k=$k stride=$stride pad=$pad", async (c) => {
    const inputs = { x: { shape: c.x }, dy: { shape: convOutShape(c) } };
    const attrs = {
      strides: c.stride,
      pad: c.pad,
      dataFormat: "NHWC",
      filterShape: [c.k[0], c.k[1], c.cin, c.cout],
    };
    expect(await relativeError(tf.Conv2DBackpropFilter, inputs, attrs)).toBeLessThan(1e-4);
  });

  it.each(CONV_CASES)("Conv2DBackpropInput x=$x k=$k stride=$stride pad=$pad", async (c) => {
    const inputs = { dy: { shape: convOutShape(c) }, filter: { shape: [c.k[0], c.k[1], c.cin, c.cout] } };
    const attrs = { strides: c.stride, pad: c.pad, dataFormat: "NHWC", inputShape: c.x };
    expect(await relativeError(tf.Conv2DBackpropInput, inputs, attrs)).toBeLessThan(1e-4);
  });

  const MATMUL_CASES: { a: number[]; b: number[]; ta: boolean; tb: boolean }[] = [
    { a: [5, 7], b: [7, 3], ta: false, tb: false },
    { a: [7, 5], b: [3, 7], ta: true, tb: true },
    { a: [4, 6, 5], b: [1, 5, 3], ta: false, tb: false },
    { a: [4, 5, 6], b: [3, 5], ta: true, tb: true },
    { a: [5, 7], b: [4, 7, 3], ta: false, tb: false },
    { a: [1, 7, 5], b: [4, 3, 7], ta: true, tb: true },
    { a: [3, 6, 5], b: [3, 5, 4], ta: false, tb: false },
    { a: [2, 3, 5, 6], b: [2, 3, 4, 5], ta: true, tb: true },
    { a: [2, 40, 32], b: [2, 32, 24], ta: false, tb: false },
    { a: [3, 32, 40], b: [3, 24, 32], ta: true, tb: true },
  ];

  it.each(MATMUL_CASES)("BatchMatMul a=$a b=$b transposeA=$ta transposeB=$tb", async (c) => {
    const inputs = { a: { shape: c.a }, b: { shape: c.b } };
    const attrs = { transposeA: c.ta, transposeB: c.tb };
    expect(await relativeError(tf.BatchMatMul, inputs, attrs)).toBeLessThan(1e-4);
  });

  it("BatchMatMul broadcasts partially shared batch shapes ([2,1] × [1,3]) like explicit tiling", async () => {
    const a = pattern(40, 1);
    const b = pattern(30, 2);
    await tf.setBackend("cpu");
    const expected = tf.tidy(() => {
      const at = tf.tile(tf.tensor4d(a, [2, 1, 4, 5]), [1, 3, 1, 1]);
      const bt = tf.tile(tf.tensor4d(b, [1, 3, 5, 2]), [2, 1, 1, 1]);
      return Array.from(tf.matMul(at, bt).dataSync());
    });
    const wasm = await runOn(
      "wasm",
      tf.BatchMatMul,
      {
        a: { shape: [2, 1, 4, 5], values: Array.from(a) },
        b: { shape: [1, 3, 5, 2], values: Array.from(b) },
      },
      {
        transposeA: false,
        transposeB: false,
      },
    );
    expect(wasm.shape).toEqual([2, 3, 4, 2]);
    for (let i = 0; i < expected.length; i++) expect(wasm.values[i]).toBeCloseTo(expected[i], 5);
  });

  const SLICE_CASES: { x: number[]; begin: number[]; size: number[]; dtype?: "int32" }[] = [
    { x: [10], begin: [3], size: [4] },
    { x: [4, 6], begin: [1, 0], size: [2, 6] },
    { x: [4, 6], begin: [1, 2], size: [3, 3] },
    { x: [2, 5, 6, 40], begin: [1, 1, 2, 3], size: [1, 3, 4, 30] },
    { x: [2, 5, 6, 7], begin: [0, 2, 0, 0], size: [2, -1, 6, 7] },
    { x: [3, 4, 5, 6, 2], begin: [1, 0, 2, 1, 0], size: [2, 4, 2, 5, 1], dtype: "int32" },
  ];

  it.each(SLICE_CASES)("Slice x=$x begin=$begin size=$size", async (c) => {
    const values =
      c.dtype === "int32" ? Array.from({ length: tf.util.sizeFromShape(c.x) }, (_, i) => i) : undefined;
    const inputs = { x: { shape: c.x, dtype: c.dtype, values } };
    expect(await relativeError(tf.Slice, inputs, { begin: c.begin, size: c.size })).toBe(0);
  });

  it.each([
    { x: [735], sizes: [100, 35, 600], axis: 0 },
    { x: [4, 6, 10], sizes: [3, 3], axis: 1 },
    { x: [2, 3, 4, 9], sizes: [2, 4, 3], axis: 3 },
  ])("SplitV x=$x sizes=$sizes axis=$axis", async (c) => {
    const attrs = { numOrSizeSplits: c.sizes, axis: c.axis };
    expect(await relativeError(tf.SplitV, { x: { shape: c.x } }, attrs)).toBe(0);
  });

  const REDUCE_CASES: { x: number[]; axis: number[]; keepDims: boolean }[] = [
    { x: [4, 16, 8, 3], axis: [1, 3], keepDims: true },
    { x: [4, 16, 8, 3], axis: [0, 1, 2], keepDims: false },
    { x: [5, 7], axis: [0], keepDims: false },
    { x: [3, 4, 5, 6, 2], axis: [0, 2, 4], keepDims: true },
    { x: [6, 10], axis: [1], keepDims: false },
  ];

  it.each(REDUCE_CASES)("Sum and Mean x=$x axis=$axis keepDims=$keepDims", async (c) => {
    for (const kernel of [tf.Sum, tf.Mean]) {
      const attrs = { axis: c.axis, keepDims: c.keepDims };
      expect(await relativeError(kernel, { x: { shape: c.x } }, attrs)).toBeLessThan(1e-5);
    }
  });

  const TRANSPOSE_CASES: { x: number[]; perm: number[]; dtype?: "int32" }[] = [
    { x: [37, 21], perm: [1, 0] },
    { x: [32, 4, 4, 6], perm: [3, 1, 2, 0] },
    { x: [3, 5, 7, 2], perm: [1, 2, 0, 3] },
    { x: [2, 3, 17, 19], perm: [0, 1, 3, 2] },
    { x: [4, 6, 2, 5], perm: [0, 2, 3, 1], dtype: "int32" },
    { x: [2, 1, 3, 1, 4], perm: [4, 1, 3, 0, 2] },
    { x: [5, 1, 3], perm: [1, 0, 2] },
  ];

  it.each(TRANSPOSE_CASES)("Transpose x=$x perm=$perm", async (c) => {
    const values =
      c.dtype === "int32" ? Array.from({ length: tf.util.sizeFromShape(c.x) }, (_, i) => i) : undefined;
    const inputs = { x: { shape: c.x, dtype: c.dtype, values } };
    expect(await relativeError(tf.Transpose, inputs, { perm: c.perm })).toBe(0);
  });

  it.each([
    {
      shapes: [
        [2, 4, 4, 3],
        [2, 4, 4, 5],
      ],
      axis: 3,
    },
    {
      shapes: [
        [3, 70],
        [3, 90],
        [3, 1],
      ],
      axis: 1,
    },
    {
      shapes: [
        [1, 5],
        [4, 5],
      ],
      axis: 0,
    },
    {
      shapes: [
        [2, 0, 3],
        [2, 4, 3],
      ],
      axis: 1,
    },
  ])("Concat shapes=$shapes axis=$axis", async (c) => {
    const inputs = c.shapes.map((shape) => ({ shape }));
    expect(await relativeError(tf.Concat, inputs, { axis: c.axis })).toBe(0);
  });

  it("Identity shares the buffer and releases it with the last reference", async () => {
    await tf.setBackend("wasm");
    const buffers = tf.engine().backend.numDataIds();
    const x = tf.tensor1d([1, 2, 3]);
    const y = tf.engine().runKernel(tf.Identity, { x }) as tf.Tensor;
    expect(tf.engine().backend.numDataIds()).toBe(buffers + 1);
    x.dispose();
    expect(Array.from(y.dataSync())).toEqual([1, 2, 3]);
    y.dispose();
    expect(tf.engine().backend.numDataIds()).toBe(buffers);
  });

  it("UnsortedSegmentSum sums rows into segments and drops out-of-range ids", async () => {
    const inputs = {
      x: { shape: [6, 2, 3] },
      segmentIds: { shape: [6], dtype: "int32" as const, values: [2, 0, 2, -1, 4, 1] },
    };
    expect(await relativeError(tf.UnsortedSegmentSum, inputs, { numSegments: 4 })).toBeLessThan(1e-6);
    const wasm = await runOn("wasm", tf.UnsortedSegmentSum, inputs, { numSegments: 4 });
    const x = pattern(36, 1);
    // Segment 2 holds rows 0 and 2; segment 3 is empty.
    for (let j = 0; j < 6; j++) expect(wasm.values[2 * 6 + j]).toBeCloseTo(x[j] + x[12 + j], 6);
    for (let j = 0; j < 6; j++) expect(wasm.values[3 * 6 + j]).toBe(0);
  });

  it("leaves no tensors or buffers behind (every kernel)", async () => {
    const c = CONV_CASES[2];
    await expectNoLeak(
      tf.Conv2DBackpropFilter,
      { x: { shape: c.x }, dy: { shape: convOutShape(c) } },
      { strides: c.stride, pad: c.pad, dataFormat: "NHWC", filterShape: [3, 3, c.cin, c.cout] },
    );
    await expectNoLeak(
      tf.Conv2DBackpropInput,
      { dy: { shape: convOutShape(c) }, filter: { shape: [3, 3, c.cin, c.cout] } },
      { strides: c.stride, pad: c.pad, dataFormat: "NHWC", inputShape: c.x },
    );
    for (const m of [MATMUL_CASES[3], MATMUL_CASES[5], MATMUL_CASES[6], MATMUL_CASES[9]]) {
      await expectNoLeak(
        tf.BatchMatMul,
        { a: { shape: m.a }, b: { shape: m.b } },
        { transposeA: m.ta, transposeB: m.tb },
      );
    }
    await expectNoLeak(
      tf.Slice,
      { x: { shape: [2, 5, 6, 40] } },
      { begin: [1, 1, 2, 3], size: [1, 3, 4, 30] },
    );
    await expectNoLeak(tf.Mean, { x: { shape: [4, 16, 8, 3] } }, { axis: [1, 3], keepDims: true });
    await expectNoLeak(tf.Sum, { x: { shape: [4, 16, 8, 3] } }, { axis: [0, 1, 2], keepDims: false });
    await expectNoLeak(tf.Transpose, { x: { shape: [32, 4, 4, 6] } }, { perm: [3, 1, 2, 0] });
    await expectNoLeak(tf.Transpose, { x: { shape: [5, 1, 3] } }, { perm: [1, 0, 2] });
    await expectNoLeak(tf.Concat, [{ shape: [2, 4, 4, 3] }, { shape: [2, 4, 4, 5] }], { axis: 3 });
    await expectNoLeak(tf.Identity, { x: { shape: [4, 3] } }, {});
    await expectNoLeak(tf.SplitV, { x: { shape: [4, 6, 10] } }, { numOrSizeSplits: [3, 3], axis: 1 });
    await expectNoLeak(
      tf.UnsortedSegmentSum,
      { x: { shape: [6, 3] }, segmentIds: { shape: [6], dtype: "int32", values: [2, 0, 2, 1, 1, 0] } },
      { numSegments: 3 },
    );
  });

  it("rejects a dy that does not match the convolution", async () => {
    await expect(
      runOn(
        "wasm",
        tf.Conv2DBackpropFilter,
        { x: { shape: [1, 8, 8, 2] }, dy: { shape: [1, 5, 5, 3] } },
        { strides: 1, pad: "same", dataFormat: "NHWC", filterShape: [3, 3, 2, 3] },
      ),
    ).rejects.toThrow(/dy shape \[1,5,5,3\] does not match the conv output \[1,8,8,3\]/);
  });
});
