import * as tf from "@tensorflow/tfjs-core";
import { silu } from "./activations.js";
import {
  fusedForwardIsFaster,
  GROUP_NORM_ACT,
  GROUP_NORM_ACT_GRAD,
  type GroupNormActAttrs,
} from "./backend/kernels/group-norm-act.js";

/**
 * GroupNorm on NHWC input (tfjs has none): channels split into `groups` groups, each normalised
 * over (H, W, channels of the group), then a per-channel affine transform. The statistics are
 * folded into one scale and shift per (sample, channel), so the full-size work is three passes
 * (x², x·a, + b) instead of five.
 */
export function groupNorm(
  x: tf.Tensor4D,
  groups: number,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  eps = 1e-5,
): tf.Tensor4D {
  const [b, h, w, c] = x.shape;
  if (c % groups !== 0) throw new Error(`groupNorm: ${c} channels are not divisible by ${groups} groups`);
  const cg = c / groups;
  const xr = tf.reshape(x, [b, h * w, groups, cg]);
  const mean = tf.mean(xr, [1, 3], true);
  const meanSq = tf.mean(tf.square(xr), [1, 3], true);
  // E[x²] − E[x]², clamped: rounding can make it slightly negative when the group is constant.
  const variance = tf.relu(tf.sub(meanSq, tf.square(mean)));
  const scale = tf.mul(tf.rsqrt(tf.add(variance, eps)), tf.reshape(gamma, [1, 1, groups, cg]));
  const shift = tf.sub(tf.reshape(beta, [1, 1, groups, cg]), tf.mul(mean, scale));
  return tf.reshape(tf.add(tf.mul(xr, scale), shift), [b, h, w, c]);
}

// One customGrad per attribute set: the fused kernel's forward, and its gradient kernel as backward.
const fusedByAttrs = new Map<string, (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor>();

function fusedGroupNormAct(attrs: GroupNormActAttrs) {
  const key = `${attrs.groups}/${attrs.eps}/${attrs.silu}`;
  let f = fusedByAttrs.get(key);
  if (f == null) {
    const named = attrs as unknown as tf.NamedAttrMap;
    f = tf.customGrad((...args: unknown[]) => {
      const [x, gamma, beta, save] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.GradSaveFunc];
      // With SiLU: [y·σ(y), y, σ(y), stats]; without: [y, stats] (the gradient kernel's inputs).
      const outs = tf.engine().runKernel(GROUP_NORM_ACT, { x, gamma, beta }, named) as tf.Tensor[];
      const [value, ...rest] = attrs.silu ? outs : [outs[0], outs[1]];
      save([x, gamma, rest[rest.length - 1], ...rest.slice(0, -1)]);
      return {
        value,
        gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
          const [xs, gs, stats, y, sig] = saved;
          const inputs: tf.NamedTensorMap = attrs.silu
            ? { dy, x: xs, gamma: gs, stats, y, sig }
            : { dy, x: xs, gamma: gs, stats };
          return tf.engine().runKernel(GROUP_NORM_ACT_GRAD, inputs, named) as tf.Tensor[];
        },
      };
    }) as (x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) => tf.Tensor;
    fusedByAttrs.set(key, f);
  }
  return f;
}

/**
 * groupNorm, followed by SiLU when `act` is "silu". While a gradient is being recorded on a backend
 * with the fused kernel (wasm), forward and gradient are one kernel each; elsewhere, and for a forward
 * alone, it is groupNorm and silu composed.
 */
export function groupNormAct(
  x: tf.Tensor4D,
  groups: number,
  gamma: tf.Tensor,
  beta: tf.Tensor,
  act: "silu" | "none",
  eps = 1e-5,
): tf.Tensor4D {
  const c = x.shape[3];
  if (c % groups !== 0) throw new Error(`groupNorm: ${c} channels are not divisible by ${groups} groups`);
  if (gamma.rank !== 1 || beta.rank !== 1 || gamma.shape[0] !== c || beta.shape[0] !== c) {
    throw new Error(`groupNorm: γ [${gamma.shape}] and β [${beta.shape}] must be [${c}]`);
  }
  // The fused forward also writes what its gradient needs (y, σ(y), the statistics): a win under a gradient,
  // where backward then recomputes nothing. Without one (sampling, a preference job's frozen reference) it
  // wins only where its passes run in SIMD; its scalar JS passes lose to the stock vectorised kernels.
  const fused = tf.getKernel(GROUP_NORM_ACT, tf.getBackend()) != null;
  if (!fused || (!tf.engine().isTapeOn() && !fusedForwardIsFaster(c))) {
    const y = groupNorm(x, groups, gamma, beta, eps);
    return act === "silu" ? silu(y) : y;
  }
  return fusedGroupNormAct({ groups, eps, silu: act === "silu" })(x, gamma, beta) as tf.Tensor4D;
}

/** LayerNorm over the last axis. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, eps = 1e-5): tf.Tensor {
  const axis = x.rank - 1;
  const mean = tf.mean(x, axis, true);
  const xc = tf.sub(x, mean);
  const variance = tf.mean(tf.square(xc), axis, true);
  return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(variance, eps))), gamma), beta);
}
