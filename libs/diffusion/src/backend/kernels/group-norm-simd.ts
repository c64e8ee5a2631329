import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { GROUP_NORM_SIMD_PLAIN, GROUP_NORM_SIMD_SHARED } from "../../gen/group-norm-simd-wasm.js";
import type { WasmMemory } from "../wasm-api.js";
import { instantiateOn, WasmHeap } from "../wasm-heap.js";
import type { Info } from "./scope.js";

/** Shape of one GroupNorm call: x is `[batch, pixels, channels]` with channels = groups · perGroup. */
export interface GroupNormDims {
  batch: number;
  pixels: number;
  channels: number;
  groups: number;
}

/** The exports of group-norm-simd.wat (pointers are byte offsets into the tfjs heap). */
export interface GroupNormSimdExports {
  colSum(x: number, pixels: number, c: number, out: number): void;
  colCenteredSq(x: number, pixels: number, c: number, mean: number, out: number): void;
  affine(x: number, y: number, pixels: number, c: number, mean: number, scale: number, shift: number): void;
  gradPass(
    dout: number,
    x: number,
    y: number,
    sig: number,
    dx: number,
    pixels: number,
    c: number,
    silu: number,
    mean: number,
    rstd: number,
    s1: number,
    s2: number,
  ): void;
  gradCombine(
    dx: number,
    x: number,
    pixels: number,
    c: number,
    mean: number,
    a: number,
    b: number,
    k: number,
  ): void;
}

/**
 * The SIMD passes instantiated on `memory` (one instance per memory; the shared-memory build for a
 * shared one). Throws where the runtime has no wasm SIMD.
 */
export function groupNormSimdExports(memory: WasmMemory): GroupNormSimdExports {
  return instantiateOn<GroupNormSimdExports>(memory, GROUP_NORM_SIMD_PLAIN, GROUP_NORM_SIMD_SHARED);
}

const perBackend = new WeakMap<object, GroupNormSimd | null>();

/** Σ v[c] over the channels of group k (float64). */
function groupSum(v: Float32Array, k: number, per: number): number {
  let acc = 0;
  for (let c = k * per; c < (k + 1) * per; c++) acc += v[c];
  return acc;
}

/**
 * GroupNorm's O(n) passes in WebAssembly SIMD on the tfjs wasm heap, in place (no copies): per sample, the
 * column sums and centred squares that give the group statistics, the affine transform, and the
 * gradient's two passes. The O(channels) arithmetic between passes stays here in float64. Used by the
 * fused GroupNorm (+ SiLU) kernels when the channel count is a multiple of 4; the JS loops in
 * group-norm-act.ts remain for the rest and as the reference the tests compare with.
 */
export class GroupNormSimd {
  private constructor(
    private readonly heap: WasmHeap,
    private readonly ex: GroupNormSimdExports,
  ) {}

  /**
   * The SIMD passes on this backend's heap (made once per backend), or undefined where the heap or SIMD is
   * not available.
   */
  static for(backend: BackendWasm): GroupNormSimd | undefined {
    let simd = perBackend.get(backend);
    if (simd === undefined) {
      simd = null;
      const heap = WasmHeap.of(backend);
      if (heap) {
        try {
          simd = new GroupNormSimd(heap, groupNormSimdExports(heap.memory));
        } catch {
          // A runtime without wasm SIMD: the JS loops serve.
        }
      }
      perBackend.set(backend, simd);
    }
    return simd ?? undefined;
  }

  /**
   * Group statistics into `stats` ([batch, 2, C]: rstd, then −mean·rstd, per channel) and y = x̂·γ + β.
   * Mean from column sums, variance from squares centred on the float32-rounded mean m with the rounding's
   * shift removed, so no E[x²] − E[x]² cancellation; y as (x − m)·rstd·γ + (β + (m − mean)·rstd·γ), so a
   * mean far from zero does not cancel in float32 either.
   */
  forward(x: Info, gamma: Info, beta: Info, y: Info, stats: Info, d: GroupNormDims, eps: number): void {
    const { batch, pixels, channels: C, groups } = d;
    const per = C / groups;
    const count = pixels * per;
    const slab = pixels * C * 4;
    const [px, py, pst] = [this.heap.ptr(x), this.heap.ptr(y), this.heap.ptr(stats)];
    const [pg, pb] = [this.heap.ptr(gamma), this.heap.ptr(beta)];
    this.heap.withScratch(4 * C, (s) => {
      const [sum, mean, scale, shift] = [s, s + 4 * C, s + 8 * C, s + 12 * C];
      const g = this.heap.f32(pg, C);
      const bt = this.heap.f32(pb, C);
      const vSum = this.heap.f32(sum, C);
      const vMean = this.heap.f32(mean, C);
      const vScale = this.heap.f32(scale, C);
      const vShift = this.heap.f32(shift, C);
      const st = this.heap.f32(pst, 2 * batch * C);
      const mu = new Float64Array(groups);
      for (let b = 0; b < batch; b++) {
        const xb = px + b * slab;
        this.ex.colSum(xb, pixels, C, sum);
        for (let k = 0; k < groups; k++) {
          mu[k] = groupSum(vSum, k, per) / count;
          vMean.fill(mu[k], k * per, (k + 1) * per);
        }
        // vSum is free again: it receives the centred squares.
        this.ex.colCenteredSq(xb, pixels, C, mean, sum);
        for (let k = 0; k < groups; k++) {
          const acc = groupSum(vSum, k, per);
          const shiftErr = mu[k] - vMean[k * per];
          const rstd = 1 / Math.sqrt(Math.max(0, acc / count - shiftErr * shiftErr) + eps);
          for (let c = k * per; c < (k + 1) * per; c++) {
            st[2 * b * C + c] = rstd;
            st[(2 * b + 1) * C + c] = -mu[k] * rstd;
            vScale[c] = rstd * g[c];
            vShift[c] = bt[c] + (vMean[c] - mu[k]) * rstd * g[c];
          }
        }
        this.ex.affine(xb, py + b * slab, pixels, C, mean, scale, shift);
      }
    });
  }

  /**
   * dx, dγ, dβ of the affine GroupNorm, followed by SiLU when `y` and `sig` (= σ(y)) are given, from
   * the forward's `stats`; the same coefficients as groupNormActBackward (group-norm-act.ts).
   */
  backward(
    dout: Info,
    x: Info,
    y: Info | null,
    sig: Info | null,
    gamma: Info,
    dx: Info,
    dgamma: Info,
    dbeta: Info,
    d: GroupNormDims,
    stats: Info,
  ): void {
    const { batch, pixels, channels: C, groups } = d;
    const per = C / groups;
    const count = pixels * per;
    const slab = pixels * C * 4;
    const silu = y != null && sig != null;
    const [pd, px, pdx, pst, pg] = [
      this.heap.ptr(dout),
      this.heap.ptr(x),
      this.heap.ptr(dx),
      this.heap.ptr(stats),
      this.heap.ptr(gamma),
    ];
    const [py, ps] = silu ? [this.heap.ptr(y), this.heap.ptr(sig)] : [0, 0];
    const accGamma = new Float64Array(C);
    const accBeta = new Float64Array(C);
    this.heap.withScratch(6 * C, (s) => {
      const [s1, s2, a, bc, k, mean] = [s, s + 4 * C, s + 8 * C, s + 12 * C, s + 16 * C, s + 20 * C];
      const g = this.heap.f32(pg, C);
      const st = this.heap.f32(pst, 2 * batch * C);
      const v1 = this.heap.f32(s1, C);
      const v2 = this.heap.f32(s2, C);
      const va = this.heap.f32(a, C);
      const vb = this.heap.f32(bc, C);
      const vk = this.heap.f32(k, C);
      const vMean = this.heap.f32(mean, C);
      for (let b = 0; b < batch; b++) {
        const off = b * slab;
        // The group means, float32-rounded, from the statistics (rstd, −mean·rstd): x̂ = (x − mean)·rstd.
        for (let c = 0; c < C; c++) vMean[c] = -st[(2 * b + 1) * C + c] / st[2 * b * C + c];
        const rstdRow = pst + 2 * b * C * 4;
        this.ex.gradPass(
          pd + off,
          px + off,
          py + off,
          ps + off,
          pdx + off,
          pixels,
          C,
          silu ? 1 : 0,
          mean,
          rstdRow,
          s1,
          s2,
        );
        for (let grp = 0; grp < groups; grp++) {
          let meanG = 0;
          let meanGx = 0;
          for (let c = grp * per; c < (grp + 1) * per; c++) {
            accBeta[c] += v1[c];
            accGamma[c] += v2[c];
            meanG += g[c] * v1[c];
            meanGx += g[c] * v2[c];
          }
          meanG /= count;
          meanGx /= count;
          for (let c = grp * per; c < (grp + 1) * per; c++) {
            const rstd = st[2 * b * C + c];
            const shiftC = st[(2 * b + 1) * C + c];
            // dx = A·u + B·x + C (groupNormActBackward) written as A·u + B·(x − mean) + (C + B·mean).
            va[c] = rstd * g[c];
            vb[c] = -rstd * meanGx * rstd;
            vk[c] = -rstd * (meanG + meanGx * (shiftC + rstd * vMean[c]));
          }
        }
        this.ex.gradCombine(pdx + off, px + off, pixels, C, mean, a, bc, k);
      }
    });
    this.heap.f32(this.heap.ptr(dgamma), C).set(accGamma);
    this.heap.f32(this.heap.ptr(dbeta), C).set(accBeta);
  }
}
