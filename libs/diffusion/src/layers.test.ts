import * as tf from "@tensorflow/tfjs-core";
import { beforeAll, describe, expect, it } from "vitest";
import { keyBias, multiHeadAttention } from "./attention.js";
import { linear } from "./linear.js";
import { groupNorm, layerNorm } from "./norm.js";
import { Rng } from "./rng.js";
import { maxAbsDiff, setupTestBackend } from "./test-fixtures.js";
import { timestepEmbedding } from "./timestep-embedding.js";
import "./gradients.js";

beforeAll(setupTestBackend);

function rand(n: number, seed: number): Float32Array {
  return new Rng(seed).normals(n);
}

describe("groupNorm", () => {
  it("normalises each (sample, group) over H, W and the group's channels, then applies γ, β", () => {
    const [B, H, W, C, G] = [2, 3, 2, 4, 2];
    const x = rand(B * H * W * C, 1);
    const gamma = [1, 2, 3, 4];
    const beta = [0.5, -0.5, 0, 1];
    const want = new Float32Array(x.length);
    const cg = C / G;
    for (let b = 0; b < B; b++) {
      for (let g = 0; g < G; g++) {
        const idx: number[] = [];
        for (let p = 0; p < H * W; p++)
          for (let c = g * cg; c < (g + 1) * cg; c++) idx.push((b * H * W + p) * C + c);
        const mean = idx.reduce((s, i) => s + x[i], 0) / idx.length;
        const v = idx.reduce((s, i) => s + (x[i] - mean) ** 2, 0) / idx.length;
        for (const i of idx) want[i] = ((x[i] - mean) / Math.sqrt(v + 1e-5)) * gamma[i % C] + beta[i % C];
      }
    }
    const got = tf.tidy(() =>
      groupNorm(tf.tensor4d(x, [B, H, W, C]), G, tf.tensor1d(gamma), tf.tensor1d(beta)).dataSync(),
    );
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
  });

  it("layerNorm normalises the last axis", () => {
    const x = rand(12, 2);
    const got = tf.tidy(() => layerNorm(tf.tensor2d(x, [3, 4]), tf.ones([4]), tf.zeros([4])).dataSync());
    for (let r = 0; r < 3; r++) {
      const row = [...got.slice(r * 4, r * 4 + 4)];
      expect(Math.abs(row.reduce((a, b) => a + b, 0))).toBeLessThan(1e-5);
    }
  });
});

describe("multiHeadAttention", () => {
  it("matches a direct per-head softmax attention, with masked keys ignored", () => {
    const [n, nq, nk, heads, c] = [2, 3, 4, 2, 6];
    const d = c / heads;
    const q = rand(n * nq * c, 3);
    const k = rand(n * nk * c, 4);
    const v = rand(n * nk * c, 5);
    const mask = new Float32Array([1, 1, 0, 1, 1, 0, 0, 0]);
    const got = tf.tidy(() => {
      const bias = keyBias(mask, n, nk);
      return multiHeadAttention(
        tf.tensor2d(q, [n * nq, c]),
        tf.tensor2d(k, [n * nk, c]),
        tf.tensor2d(v, [n * nk, c]),
        n,
        nq,
        nk,
        heads,
        bias,
      ).dataSync();
    });
    const want = new Float32Array(n * nq * c);
    for (let b = 0; b < n; b++) {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < nq; i++) {
          const s: number[] = [];
          for (let j = 0; j < nk; j++) {
            let dot = 0;
            for (let e = 0; e < d; e++)
              dot += q[(b * nq + i) * c + h * d + e] * k[(b * nk + j) * c + h * d + e];
            s.push(mask[b * nk + j] > 0 ? dot / Math.sqrt(d) : Number.NEGATIVE_INFINITY);
          }
          const m = Math.max(...s);
          const w = s.map((x) => Math.exp(x - m));
          const z = w.reduce((a, x) => a + x, 0);
          for (let e = 0; e < d; e++) {
            let o = 0;
            for (let j = 0; j < nk; j++) o += (w[j] / z) * v[(b * nk + j) * c + h * d + e];
            want[(b * nq + i) * c + h * d + e] = o;
          }
        }
      }
    }
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-5);
  });

  it("keyBias: an all-padding row attends to every position (no NaN for the null prompt)", () => {
    const b = keyBias(new Float32Array([0, 0, 1, 0]), 2, 2);
    expect([...b.dataSync()]).toEqual([0, 0, 0, -1e9]);
    b.dispose();
  });
});

describe("timestepEmbedding", () => {
  it("is [cos(t·f_j), sin(t·f_j)] with f_j = 10000^(−j/half)", () => {
    const e = timestepEmbedding([0, 7], 4);
    const got = e.dataSync();
    e.dispose();
    const f1 = Math.exp(-Math.log(10000) / 2);
    expect(
      maxAbsDiff(got, [1, 1, 0, 0, Math.cos(7), Math.cos(7 * f1), Math.sin(7), Math.sin(7 * f1)]),
    ).toBeLessThan(1e-6);
  });
});

describe("linear", () => {
  it("computes x·W + b and its gradients with explicit transposes", () => {
    const x = tf.tensor2d([1, 2, 3, 4], [2, 2]);
    const w = tf.tensor2d([0.5, -1, 2, 0, 1, 3], [2, 3]);
    const b = tf.tensor1d([1, 2, 3]);
    const y = linear(x, w, b);
    expect([...y.dataSync()]).toEqual([1.5, 3, 11, 2.5, 3, 21]);
    const g = tf.grads((xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      tf.sum(tf.mul(linear(xx as tf.Tensor2D, ww, bb), tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3]))),
    )([x, w, b]);
    // dL/dx = G·Wᵀ, dL/dW = xᵀ·G, dL/db = column sums of G.
    expect([...g[0].dataSync()]).toEqual([4.5, 11, 9, 23]);
    expect([...g[1].dataSync()]).toEqual([13, 17, 21, 18, 24, 30]);
    expect([...g[2].dataSync()]).toEqual([5, 7, 9]);
    tf.dispose([x, w, b, y, ...g]);
  });
});
