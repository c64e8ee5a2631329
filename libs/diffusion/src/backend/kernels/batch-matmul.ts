import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type Info, type Scope, withScope } from "./scope.js";

/**
 * Per-batch work (multiply-adds) above which a batched product with distinct operands is split into
 * per-batch XNNPACK products; below it the stock scalar loop wins because each XNNPACK call costs a
 * few kernel dispatches.
 */
const SPLIT_MIN_MACS = 16384;

/** Makes `x` ([batch, r, c]) row-major in the orientation the product needs (explicit transpose). */
function oriented(s: Scope, x: Info, transpose: boolean): Info {
  return transpose ? s.transpose(x, [0, 2, 1]) : x;
}

/**
 * BatchMatMul for the wasm backend. The stock kernel uses XNNPACK only for one batch without transpose
 * flags and otherwise a scalar loop (≈ 1.5 GFLOP/s). This one brings every case it can onto that fast
 * path: transposes are materialised (a memory-bound copy), a shared right operand folds the batch
 * into the rows, a shared left operand folds it into the columns, and large distinct batches run as
 * per-batch products. Small distinct batches keep the stock loop.
 */
function batchMatMul(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info {
  const { a, b } = args.inputs as { a: Info; b: Info };
  const transposeA = args.attrs?.transposeA === true;
  const transposeB = args.attrs?.transposeB === true;
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    throw new Error(`idpo wasm BatchMatMul supports float32 only, got ${a.dtype} × ${b.dtype}`);
  }
  const ra = a.shape.length;
  const rb = b.shape.length;
  if (ra < 2 || rb < 2)
    throw new Error(`BatchMatMul needs rank ≥ 2 operands, got [${a.shape}] and [${b.shape}]`);
  const m = transposeA ? a.shape[ra - 1] : a.shape[ra - 2];
  const k = transposeA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transposeB ? b.shape[rb - 1] : b.shape[rb - 2];
  const n = transposeB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (k !== kb) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kb}) of Tensors with shapes ${a.shape} and ${b.shape} and ` +
        `transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const outer = tf.broadcast_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2));
  const outShape = [...outer, m, n];
  const batchA0 = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB0 = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const batch = tf.util.sizeFromShape(outer);
  return withScope(args.backend, (s) => {
    // Partially shared batch shapes (e.g. [2,1] × [1,3]) are tiled to the full batch first.
    const full = (x: Info, batchX: number): [Info, number] => {
      if (batchX === 1 || batchX === batch) return [x, batchX];
      const r = x.shape.length;
      const lead = new Array<number>(outer.length + 2 - r).fill(1);
      const expanded = s.reshape(x, [...lead, ...x.shape]);
      const reps = [...outer.map((d, i) => d / expanded.shape[i]), 1, 1];
      return [s.run(tf.Tile, { x: expanded }, { reps }), batch];
    };
    const [af, batchA] = full(a, batchA0);
    const [bf, batchB] = full(b, batchB0);
    const a3 = s.reshape(af, [batchA, transposeA ? k : m, transposeA ? m : k]);
    const b3 = s.reshape(bf, [batchB, transposeB ? n : k, transposeB ? k : n]);
    const stock = (x: Info, y: Info, tx: boolean, ty: boolean) =>
      s.reshape(s.run(tf.BatchMatMul, { a: x, b: y }, { transposeA: tx, transposeB: ty }), outShape);
    if (batchB === 1) {
      // Shared right operand: rows of every batch of a go through one product.
      const rows = s.reshape(oriented(s, a3, transposeA), [batchA * m, k]);
      const right = s.reshape(oriented(s, b3, transposeB), [k, n]);
      const product = s.matMul2d(rows, right);
      if (batchA === batch) return s.reshape(product, outShape);
      // a had one batch too but the output is broadcast over batch (b's outer dims were all 1).
      return s.reshape(
        s.run(tf.Tile, { x: s.reshape(product, [1, m, n]) }, { reps: [batch, 1, 1] }),
        outShape,
      );
    }
    if (batchA === 1) {
      // Shared left operand: C[i] = A·B[i], so A·[B[0] … B[b−1]] side by side is every C at once.
      const left = s.reshape(oriented(s, a3, transposeA), [m, k]);
      const cols = s.reshape(s.transpose(oriented(s, b3, transposeB), [1, 0, 2]), [k, batchB * n]);
      const product = s.reshape(s.matMul2d(left, cols), [m, batchB, n]);
      return s.reshape(s.transpose(product, [1, 0, 2]), outShape);
    }
    if (m * k * n < SPLIT_MIN_MACS) return stock(a3, b3, transposeA, transposeB);
    const left = oriented(s, a3, transposeA);
    const right = oriented(s, b3, transposeB);
    const parts: Info[] = [];
    for (let i = 0; i < batch; i++) {
      const ai = s.run(tf.Slice, { x: left }, { begin: [i, 0, 0], size: [1, m, k] });
      const bi = s.run(tf.Slice, { x: right }, { begin: [i, 0, 0], size: [1, k, n] });
      parts.push(s.run(tf.BatchMatMul, { a: ai, b: bi }, { transposeA: false, transposeB: false }));
    }
    const joined = s.run(tf.Concat, parts as unknown as tf.NamedTensorInfoMap, { axis: 0 });
    return s.reshape(joined, outShape);
  });
}

/** BatchMatMul for the wasm backend, replacing the stock kernel (which it still uses underneath). */
export const batchMatMulConfig: tf.KernelConfig = {
  kernelName: tf.BatchMatMul,
  backendName: "wasm",
  kernelFunc: batchMatMul as unknown as tf.KernelFunc,
};
