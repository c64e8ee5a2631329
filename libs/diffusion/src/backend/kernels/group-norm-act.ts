import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { type GroupNormDims, GroupNormSimd } from "./group-norm-simd.js";
import { type Info, stockKernel } from "./scope.js";

/** Kernel names of the fused GroupNorm (+ SiLU), forward and gradient. */
export const GROUP_NORM_ACT = "IdpoGroupNormAct";
export const GROUP_NORM_ACT_GRAD = "IdpoGroupNormActGrad";

/** Attributes of both kernels. */
export interface GroupNormActAttrs {
  groups: number;
  eps: number;
  /** Apply SiLU after the affine transform. */
  silu: boolean;
}

type Dims = GroupNormDims;

/**
 * Whether the fused kernel's forward beats the stock kernels composed when no gradient follows
 * (sampling, a preference job's frozen reference): where its passes run in SIMD (wasm, channels a
 * multiple of 4) it does, by about a sixth of a shapes16 UNet forward; its scalar JS passes do not.
 */
export function fusedForwardIsFaster(channels: number): boolean {
  return (
    tf.getBackend() === "wasm" && simdFor(tf.backend() as unknown as BackendWasm, channels) !== undefined
  );
}

/** The SIMD passes where they serve this channel count (whole 4-lane vectors), else undefined. */
function simdFor(backend: BackendWasm, channels: number): GroupNormSimd | undefined {
  return channels % 4 === 0 ? GroupNormSimd.for(backend) : undefined;
}

function dimsOf(x: Info, groups: number): Dims {
  const shape = x.shape;
  const channels = shape[shape.length - 1];
  const batch = shape[0];
  if (shape.length < 2 || channels % groups !== 0) {
    throw new Error(`idpo GroupNorm: input [${shape}] does not split into ${groups} channel groups`);
  }
  return { batch, pixels: tf.util.sizeFromShape(shape) / (batch * channels), channels, groups };
}

/**
 * Per sample b and channel c the coefficients that turn x into x̂ = (x − mean_g)·rstd_g: rstd_g at
 * `[(2b)·C + c]`, −mean_g·rstd_g at `[(2b + 1)·C + c]`. Group statistics in float64 from per-channel
 * sums (so the inner loop has no indirection); with float64 sums E[x²] − E[x]² keeps float32
 * precision for activations of any practical scale.
 */
export function groupNormStats(x: Float32Array, d: Dims, eps: number): Float64Array {
  const { batch, pixels, channels, groups } = d;
  const per = channels / groups;
  const count = pixels * per;
  const out = new Float64Array(2 * batch * channels);
  for (let b = 0; b < batch; b++) {
    const ra = out.subarray(2 * b * channels, (2 * b + 1) * channels);
    const rb = out.subarray((2 * b + 1) * channels, (2 * b + 2) * channels);
    const base = b * pixels * channels;
    for (let p = 0; p < pixels; p++) {
      const row = base + p * channels;
      for (let c = 0; c < channels; c++) {
        const v = x[row + c];
        ra[c] += v;
        rb[c] += v * v;
      }
    }
    for (let g = 0; g < groups; g++) {
      let sum = 0;
      let sumSq = 0;
      for (let c = g * per; c < (g + 1) * per; c++) {
        sum += ra[c];
        sumSq += rb[c];
      }
      const mean = sum / count;
      const rstd = 1 / Math.sqrt(Math.max(0, sumSq / count - mean * mean) + eps);
      for (let c = g * per; c < (g + 1) * per; c++) {
        ra[c] = rstd;
        rb[c] = -mean * rstd;
      }
    }
  }
  return out;
}

/** y = x̂·γ + β (the affine GroupNorm; SiLU is applied by the caller), x̂ from groupNormStats. */
export function groupNormAffine(
  x: Float32Array,
  gamma: Float32Array,
  beta: Float32Array,
  out: Float32Array,
  d: Dims,
  stats: Float32Array | Float64Array,
): void {
  const { batch, pixels, channels } = d;
  const scale = new Float64Array(channels);
  const shift = new Float64Array(channels);
  for (let b = 0; b < batch; b++) {
    for (let c = 0; c < channels; c++) {
      scale[c] = stats[2 * b * channels + c] * gamma[c];
      shift[c] = stats[(2 * b + 1) * channels + c] * gamma[c] + beta[c];
    }
    const base = b * pixels * channels;
    for (let p = 0; p < pixels; p++) {
      const row = base + p * channels;
      for (let c = 0; c < channels; c++) out[row + c] = x[row + c] * scale[c] + shift[c];
    }
  }
}

/**
 * Gradients of the affine GroupNorm followed by SiLU (`y` and `sig` = σ(y) given) or not (`sig`
 * null): dx, dγ, dβ from dout. With x̂ the normalised input and u = dL/dy, per group
 * dx = rstd·(γ·u − mean(γ·u) − x̂·mean(γ·u·x̂)), which per sample is A[c]·u + B[c]·x + C[c]; dx first
 * holds u.
 */
export function groupNormActBackward(
  dout: Float32Array,
  x: Float32Array,
  y: Float32Array | null,
  sig: Float32Array | null,
  gamma: Float32Array,
  dx: Float32Array,
  dgamma: Float32Array,
  dbeta: Float32Array,
  d: Dims,
  stats: Float32Array | Float64Array,
): void {
  const { batch, pixels, channels, groups } = d;
  const per = channels / groups;
  const count = pixels * per;
  const ra = new Float64Array(channels);
  const rb = new Float64Array(channels);
  const s1 = new Float64Array(channels);
  const s2 = new Float64Array(channels);
  const accGamma = new Float64Array(channels);
  const accBeta = new Float64Array(channels);
  for (let b = 0; b < batch; b++) {
    ra.set(stats.subarray(2 * b * channels, (2 * b + 1) * channels));
    rb.set(stats.subarray((2 * b + 1) * channels, (2 * b + 2) * channels));
    s1.fill(0);
    s2.fill(0);
    const base = b * pixels * channels;
    for (let p = 0; p < pixels; p++) {
      const row = base + p * channels;
      if (y != null && sig != null) {
        for (let c = 0; c < channels; c++) {
          const i = row + c;
          const s = sig[i];
          const u = dout[i] * s * (1 + y[i] * (1 - s));
          dx[i] = u;
          s1[c] += u;
          s2[c] += u * (x[i] * ra[c] + rb[c]);
        }
      } else {
        for (let c = 0; c < channels; c++) {
          const i = row + c;
          const u = dout[i];
          dx[i] = u;
          s1[c] += u;
          s2[c] += u * (x[i] * ra[c] + rb[c]);
        }
      }
    }
    for (let g = 0; g < groups; g++) {
      let meanG = 0;
      let meanGx = 0;
      for (let c = g * per; c < (g + 1) * per; c++) {
        accBeta[c] += s1[c];
        accGamma[c] += s2[c];
        meanG += gamma[c] * s1[c];
        meanGx += gamma[c] * s2[c];
      }
      meanG /= count;
      meanGx /= count;
      for (let c = g * per; c < (g + 1) * per; c++) {
        const rstd = ra[c];
        // Coefficients of u, x and 1; s1/s2 are free again and hold B and C.
        s1[c] = -rstd * meanGx * ra[c];
        s2[c] = -rstd * (meanG + meanGx * rb[c]);
        ra[c] = rstd * gamma[c];
      }
    }
    for (let p = 0; p < pixels; p++) {
      const row = base + p * channels;
      for (let c = 0; c < channels; c++) {
        const i = row + c;
        dx[i] = ra[c] * dx[i] + s1[c] * x[i] + s2[c];
      }
    }
  }
  for (let c = 0; c < channels; c++) {
    dgamma[c] = accGamma[c];
    dbeta[c] = accBeta[c];
  }
}

function checkAffine(x: Info, gamma: Info, beta: Info): void {
  const c = x.shape[x.shape.length - 1];
  for (const t of [x, gamma, beta]) {
    if (t.dtype !== "float32") throw new Error(`idpo GroupNorm supports float32 only, got ${t.dtype}`);
  }
  if (gamma.shape.length !== 1 || beta.shape.length !== 1 || gamma.shape[0] !== c || beta.shape[0] !== c) {
    throw new Error(`idpo GroupNorm: γ [${gamma.shape}] and β [${beta.shape}] must be [${c}]`);
  }
}

/**
 * Fused GroupNorm (+ SiLU) on the wasm heap: statistics and the affine transform in two JS passes
 * instead of a dozen broadcasting kernels; σ(y) and y·σ(y) with XNNPACK's vectorised kernels.
 * Outputs, with SiLU: [y·σ(y), y, σ(y), stats]; without: [y, stats]. stats (`[batch, 2, channels]`,
 * see groupNormStats) and the intermediates are what the gradient kernel needs, so that backward
 * recomputes nothing.
 */
function groupNormAct(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info[] {
  const { x, gamma, beta } = args.inputs as { x: Info; gamma: Info; beta: Info };
  const attrs = args.attrs as unknown as GroupNormActAttrs;
  checkAffine(x, gamma, beta);
  const d = dimsOf(x, attrs.groups);
  const backend = args.backend;
  const y = backend.makeOutput([...x.shape], "float32");
  const stats = backend.makeOutput([d.batch, 2, d.channels], "float32");
  const simd = simdFor(backend, d.channels);
  if (simd) {
    simd.forward(x, gamma, beta, y, stats, d, attrs.eps);
  } else {
    // Views after every allocation: makeOutput can grow (and so detach) the heap.
    const view = (t: Info) => backend.typedArrayFromHeap(t) as Float32Array;
    const values = groupNormStats(view(x), d, attrs.eps);
    view(stats).set(values);
    groupNormAffine(view(x), view(gamma), view(beta), view(y), d, values);
  }
  if (!attrs.silu) return [y, stats];
  const sig = stockKernel(tf.Sigmoid)({ inputs: { x: y }, backend });
  const out = stockKernel(tf.Multiply)({ inputs: { a: y, b: sig }, backend });
  return [out, y, sig, stats];
}

/** Gradient of the fused GroupNorm (+ SiLU) from the forward's saved outputs: [dx, dγ, dβ]. */
function groupNormActGrad(args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}): Info[] {
  const { dy, x, gamma, stats, y, sig } = args.inputs as {
    dy: Info;
    x: Info;
    gamma: Info;
    stats: Info;
    y?: Info;
    sig?: Info;
  };
  const attrs = args.attrs as unknown as GroupNormActAttrs;
  checkAffine(x, gamma, gamma);
  const d = dimsOf(x, attrs.groups);
  const same = (t: Info | undefined) => t != null && t.shape.join() === x.shape.join();
  if (!same(dy) || (attrs.silu && !(same(y) && same(sig)))) {
    throw new Error(`idpo GroupNorm gradient: dy, y and σ(y) must have the shape of x [${x.shape}]`);
  }
  if (stats.shape.join() !== [d.batch, 2, d.channels].join()) {
    throw new Error(`idpo GroupNorm gradient: stats [${stats.shape}] must be [${d.batch},2,${d.channels}]`);
  }
  const backend = args.backend;
  const dx = backend.makeOutput([...x.shape], "float32");
  const dgamma = backend.makeOutput([...gamma.shape], "float32");
  const dbeta = backend.makeOutput([...gamma.shape], "float32");
  const simd = simdFor(backend, d.channels);
  if (simd) {
    const silu = attrs.silu && y != null && sig != null;
    simd.backward(dy, x, silu ? y : null, silu ? sig : null, gamma, dx, dgamma, dbeta, d, stats);
    return [dx, dgamma, dbeta];
  }
  const view = (t: Info) => backend.typedArrayFromHeap(t) as Float32Array;
  groupNormActBackward(
    view(dy),
    view(x),
    attrs.silu && y != null ? view(y) : null,
    attrs.silu && sig != null ? view(sig) : null,
    view(gamma),
    view(dx),
    view(dgamma),
    view(dbeta),
    d,
    view(stats),
  );
  return [dx, dgamma, dbeta];
}

/** Fused GroupNorm (+ SiLU) forward for the wasm backend. */
export const groupNormActConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM_ACT,
  backendName: "wasm",
  kernelFunc: groupNormAct as unknown as tf.KernelFunc,
};

/** Fused GroupNorm (+ SiLU) gradient for the wasm backend. */
export const groupNormActGradConfig: tf.KernelConfig = {
  kernelName: GROUP_NORM_ACT_GRAD,
  backendName: "wasm",
  kernelFunc: groupNormActGrad as unknown as tf.KernelFunc,
};
