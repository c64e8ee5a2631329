import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { maxRelativeError } from "../test-fixtures.js";
import { groupNormActBackward, groupNormAffine, groupNormStats } from "./kernels/group-norm-act.js";
import { type GroupNormDims, GroupNormSimd, groupNormSimdExports } from "./kernels/group-norm-simd.js";
import { wasmApi } from "./wasm-api.js";
import { registerWasmKernels } from "./wasm-kernels.js";
import { activateWasm } from "./wasm-threaded.js";

function pattern(size: number, seed: number, offset: number, spread: number): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++)
    out[i] = offset + spread * Math.sin(1.3 * i + 0.7 * seed) * Math.cos(0.29 * i);
  return out;
}

describe("group-norm-simd.wat", () => {
  it.each([false, true])(
    "passes on a hand-made slab give hand-computed values (shared memory %s)",
    (shared) => {
      const memory = new wasmApi.Memory(shared ? { initial: 1, maximum: 2, shared: true } : { initial: 1 });
      const ex = groupNormSimdExports(memory);
      const f = new Float32Array(memory.buffer);
      // x: 2 pixels × 4 channels at byte 0; per-channel vectors from byte 256 on.
      f.set([1, 2, 3, 4, 5, 6, 7, 8], 0);
      ex.colSum(0, 2, 4, 256);
      expect(Array.from(f.subarray(64, 68))).toEqual([6, 8, 10, 12]);
      f.set([3, 4, 5, 6], 80); // the column means
      ex.colCenteredSq(0, 2, 4, 320, 256);
      expect(Array.from(f.subarray(64, 68))).toEqual([8, 8, 8, 8]);
      f.set([2, 0.5, -1, 0], 96); // scale
      f.set([1, 1, 1, 1], 112); // shift
      f.set([1, 0, 3, 0], 120); // mean at byte 480
      ex.affine(0, 512, 2, 4, 480, 384, 448);
      expect(Array.from(f.subarray(128, 136))).toEqual([1, 2, 1, 1, 9, 4, -3, 1]);
      // Without SiLU: dx = dout, s1 = Σ dout, s2 = Σ dout·(x − mean)·rstd.
      f.set([1, -1, 2, 0, 3, 1, -2, 4], 160); // dout at byte 640
      f.set([3, 4, 5, 6], 176); // mean at 704
      f.set([1, 1, 1, 1], 180); // rstd at 720
      ex.gradPass(640, 0, 0, 0, 768, 2, 4, 0, 704, 720, 800, 816);
      expect(Array.from(f.subarray(192, 200))).toEqual([1, -1, 2, 0, 3, 1, -2, 4]);
      expect(Array.from(f.subarray(200, 204))).toEqual([4, 0, 0, 4]);
      expect(Array.from(f.subarray(204, 208))).toEqual([4, 4, -8, 8]);
      // dx = a·dx + b·(x − mean) + k, the mean [3, 4, 5, 6] still at byte 704
      f.set([2, 2, 2, 2], 208);
      f.set([1, 0, 0, 1], 212);
      f.set([0, 1, 0, -1], 216);
      ex.gradCombine(768, 0, 2, 4, 704, 832, 848, 864);
      expect(Array.from(f.subarray(192, 200))).toEqual([0, -1, 4, -3, 8, 3, -4, 9]);
    },
  );

  it("the SiLU gradient pass: u = dout·σ·(1 + y·(1 − σ))", () => {
    const memory = new wasmApi.Memory({ initial: 1 });
    const ex = groupNormSimdExports(memory);
    const f = new Float32Array(memory.buffer);
    const y = [0.5, -1, 2, 0];
    const sig = y.map((v) => 1 / (1 + Math.exp(-v)));
    f.set([1, 2, -1, 3], 0); // dout
    f.set([0, 0, 0, 0], 4); // x
    f.set(y, 8);
    f.set(sig, 12);
    f.set([0, 0, 0, 0], 20); // mean
    f.set([1, 1, 1, 1], 24); // rstd
    ex.gradPass(0, 16, 32, 48, 64, 1, 4, 1, 80, 96, 112, 128);
    const expected = [1, 2, -1, 3].map((d, i) => d * sig[i] * (1 + y[i] * (1 - sig[i])));
    expect(maxRelativeError(expected, f.subarray(16, 20))).toBeLessThan(1e-6);
    expect(maxRelativeError(expected, f.subarray(28, 32))).toBeLessThan(1e-6);
  });
});

describe("GroupNormSimd on the tfjs wasm heap matches the JS loops", () => {
  let simd: GroupNormSimd;
  beforeAll(async () => {
    await activateWasm(1);
    registerWasmKernels();
    await tf.setBackend("wasm");
    const s = GroupNormSimd.for(tf.backend() as BackendWasm);
    if (!s) throw new Error("no SIMD GroupNorm on this wasm backend");
    simd = s;
  });

  const d: GroupNormDims = { batch: 3, pixels: 20, channels: 24, groups: 6 };
  const n = d.batch * d.pixels * d.channels;

  it.each([0.3, 50])("statistics and affine transform within 1e-5 (mean %s)", (offset) => {
    const xs = pattern(n, 1, offset, 2);
    const gs = pattern(d.channels, 2, 1, 0.5);
    const bs = pattern(d.channels, 3, 0, 0.4);
    const stats = groupNormStats(xs, d, 1e-5);
    const yRef = new Float32Array(n);
    groupNormAffine(xs, gs, bs, yRef, d, stats);
    const x = tf.tensor1d(xs);
    const gamma = tf.tensor1d(gs);
    const beta = tf.tensor1d(bs);
    const y = tf.zeros([n]);
    const st = tf.zeros([d.batch * 2 * d.channels]);
    simd.forward(x, gamma, beta, y, st, d, 1e-5);
    expect(maxRelativeError(stats, st.dataSync())).toBeLessThan(1e-5);
    expect(maxRelativeError(yRef, y.dataSync())).toBeLessThan(1e-5);
    tf.dispose([x, gamma, beta, y, st]);
  });

  it.each([true, false])("gradient within 1e-5 (SiLU %s)", (silu) => {
    const xs = pattern(n, 4, 0.5, 1.5);
    const gs = pattern(d.channels, 5, 1, 0.5);
    const douts = pattern(n, 6, 0, 1);
    const stats = Float32Array.from(groupNormStats(xs, d, 1e-5));
    const ys = pattern(n, 7, 0, 2);
    const sigs = ys.map((v) => 1 / (1 + Math.exp(-v)));
    const ref = {
      dx: new Float32Array(n),
      dg: new Float32Array(d.channels),
      db: new Float32Array(d.channels),
    };
    groupNormActBackward(
      douts,
      xs,
      silu ? ys : null,
      silu ? sigs : null,
      gs,
      ref.dx,
      ref.dg,
      ref.db,
      d,
      stats,
    );
    const [dout, x, y, sig, gamma, st] = [douts, xs, ys, sigs, gs, stats].map((a) => tf.tensor1d(a));
    const [dx, dg, db] = [tf.zeros([n]), tf.zeros([d.channels]), tf.zeros([d.channels])];
    simd.backward(dout, x, silu ? y : null, silu ? sig : null, gamma, dx, dg, db, d, st);
    expect(maxRelativeError(ref.dx, dx.dataSync())).toBeLessThan(1e-5);
    expect(maxRelativeError(ref.dg, dg.dataSync())).toBeLessThan(1e-5);
    expect(maxRelativeError(ref.db, db.dataSync())).toBeLessThan(1e-5);
    tf.dispose([dout, x, y, sig, gamma, st, dx, dg, db]);
  });
});
