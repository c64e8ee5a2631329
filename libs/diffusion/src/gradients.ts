import * as tf from "@tensorflow/tfjs-core";

// tfjs-core's node bundle ships no gradient definitions (only the @tensorflow/tfjs umbrella
// registers them). These are the ones the diffusion models, losses and backend checks need,
// written from the kernels' definitions. A kernel that already has a gradient (e.g. registered by
// @tensorflow/tfjs when tfjs-node is loaded first) keeps it.

type Attrs = Record<string, unknown>;
type GradMap = Record<string, () => tf.Tensor>;
interface Config {
  kernelName: string;
  inputsToSave?: string[];
  outputsToSave?: boolean[];
  saveAllInputs?: boolean;
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: Attrs) => GradMap | (() => tf.Tensor)[];
}

/** Sums a broadcast gradient back to the input's shape. */
function unbroadcast(g: tf.Tensor, shape: number[]): tf.Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const axes = tf.backend_util.getReductionAxes(shape, g.shape);
  const r = axes.length > 0 ? tf.sum(g, axes) : g;
  return tf.reshape(r, shape);
}

/**
 * Broadcasts a reduced gradient back over the reduced axes of `shape`, times `scale` (applied to the
 * small tensor, saving tfjs's full-size divide). Multiplying by ones broadcasts faster than Tile on wasm.
 */
function expandReduced(dy: tf.Tensor, shape: number[], axisAttr: unknown, scale = 1): tf.Tensor {
  const axes = tf.util.parseAxisParam(axisAttr as number | number[], shape);
  const keep = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const small = tf.reshape(scale === 1 ? dy : tf.mul(dy, scale), keep);
  return tf.mul(small, tf.ones(shape));
}

/** Swaps the last two axes. */
function swapLast(x: tf.Tensor): tf.Tensor {
  const perm = x.shape.map((_, i) => i);
  perm[x.rank - 1] = x.rank - 2;
  perm[x.rank - 2] = x.rank - 1;
  return tf.transpose(x, perm);
}

const single = (dy: tf.Tensor | tf.Tensor[]): tf.Tensor => (Array.isArray(dy) ? dy[0] : dy);

const configs: Config[] = [
  {
    kernelName: "Add",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(single(dy), a.shape),
      b: () => unbroadcast(single(dy), b.shape),
    }),
  },
  {
    kernelName: "Sub",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(single(dy), a.shape),
      b: () => unbroadcast(tf.neg(single(dy)), b.shape),
    }),
  },
  {
    kernelName: "Multiply",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.mul(single(dy), b), a.shape),
      b: () => unbroadcast(tf.mul(single(dy), a), b.shape),
    }),
  },
  {
    kernelName: "RealDiv",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.div(single(dy), b), a.shape),
      b: () => unbroadcast(tf.neg(tf.div(tf.mul(single(dy), a), tf.square(b))), b.shape),
    }),
  },
  {
    kernelName: "SquaredDifference",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => {
      const two = () => tf.mul(tf.mul(single(dy), tf.sub(a, b)), 2);
      return { a: () => unbroadcast(two(), a.shape), b: () => unbroadcast(tf.neg(two()), b.shape) };
    },
  },
  {
    kernelName: "Maximum",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.mul(single(dy), tf.cast(tf.greaterEqual(a, b), "float32")), a.shape),
      b: () => unbroadcast(tf.mul(single(dy), tf.cast(tf.less(a, b), "float32")), b.shape),
    }),
  },
  {
    kernelName: "Minimum",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b]) => ({
      a: () => unbroadcast(tf.mul(single(dy), tf.cast(tf.lessEqual(a, b), "float32")), a.shape),
      b: () => unbroadcast(tf.mul(single(dy), tf.cast(tf.greater(a, b), "float32")), b.shape),
    }),
  },
  { kernelName: "Neg", gradFunc: (dy) => ({ x: () => tf.neg(single(dy)) }) },
  {
    kernelName: "Square",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(single(dy), tf.mul(x, 2)) }),
  },
  {
    kernelName: "Sqrt",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.div(single(dy), tf.mul(tf.sqrt(x), 2)) }),
  },
  {
    kernelName: "Rsqrt",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(single(dy), tf.mul(tf.pow(x, -1.5), -0.5)) }),
  },
  { kernelName: "Exp", outputsToSave: [true], gradFunc: (dy, [y]) => ({ x: () => tf.mul(single(dy), y) }) },
  { kernelName: "Log", inputsToSave: ["x"], gradFunc: (dy, [x]) => ({ x: () => tf.div(single(dy), x) }) },
  {
    kernelName: "Log1p",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.div(single(dy), tf.add(x, 1)) }),
  },
  {
    kernelName: "Sigmoid",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(single(dy), tf.mul(y, tf.sub(1, y))) }),
  },
  {
    kernelName: "Tanh",
    outputsToSave: [true],
    gradFunc: (dy, [y]) => ({ x: () => tf.mul(single(dy), tf.sub(1, tf.square(y))) }),
  },
  {
    kernelName: "Softplus",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(single(dy), tf.sigmoid(x)) }),
  },
  {
    kernelName: "Relu",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(single(dy), tf.step(x)) }),
  },
  {
    kernelName: "Abs",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.mul(single(dy), tf.sign(x)) }),
  },
  {
    kernelName: "Pow",
    inputsToSave: ["a", "b"],
    outputsToSave: [true],
    gradFunc: (dy, [a, b, y]) => ({
      a: () => unbroadcast(tf.mul(single(dy), tf.mul(b, tf.pow(a, tf.sub(b, 1)))), a.shape),
      b: () =>
        unbroadcast(
          tf.mul(single(dy), tf.mul(y, tf.where(tf.greater(a, 0), tf.log(a), tf.zerosLike(a)))),
          b.shape,
        ),
    }),
  },
  { kernelName: "Cast", gradFunc: (dy) => ({ x: () => tf.clone(single(dy)) }) },
  { kernelName: "Identity", gradFunc: (dy) => ({ x: () => tf.clone(single(dy)) }) },
  {
    kernelName: "Reshape",
    inputsToSave: ["x"],
    gradFunc: (dy, [x]) => ({ x: () => tf.reshape(single(dy), x.shape) }),
  },
  {
    kernelName: "ExpandDims",
    inputsToSave: ["input"],
    gradFunc: (dy, [x]) => ({ input: () => tf.reshape(single(dy), x.shape) }),
  },
  {
    kernelName: "Transpose",
    gradFunc: (dy, _saved, attrs) => {
      const perm = attrs.perm as number[];
      const inverse = new Array<number>(perm.length);
      for (let i = 0; i < perm.length; i++) inverse[perm[i]] = i;
      return { x: () => tf.transpose(single(dy), inverse) };
    },
  },
  {
    kernelName: "Concat",
    saveAllInputs: true,
    gradFunc: (dy, saved, attrs) => {
      const axis = tf.util.parseAxisParam(attrs.axis as number, saved[0].shape)[0];
      const sizes = saved.map((t) => t.shape[axis]);
      const parts = tf.split(single(dy), sizes, axis);
      return parts.map((p) => () => p);
    },
  },
  {
    kernelName: "SplitV",
    gradFunc: (dy, _saved, attrs) => ({ x: () => tf.concat(dy as tf.Tensor[], attrs.axis as number) }),
  },
  {
    kernelName: "Slice",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const g = single(dy);
      const begin = attrs.begin as number[];
      const pads: [number, number][] = x.shape.map((d, i) => [begin[i], d - begin[i] - g.shape[i]]);
      return { x: () => tf.pad(g, pads) };
    },
  },
  {
    kernelName: "Tile",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const reps = attrs.reps as number[];
      const g = single(dy);
      // [r0*d0, r1*d1, ...] → [r0, d0, r1, d1, ...], summed over the repeat axes.
      const split: number[] = [];
      const axes: number[] = [];
      for (let i = 0; i < x.rank; i++) {
        split.push(reps[i], x.shape[i]);
        axes.push(2 * i);
      }
      return { x: () => tf.reshape(tf.sum(tf.reshape(g, split), axes), x.shape) };
    },
  },
  {
    kernelName: "Mean",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const axes = tf.util.parseAxisParam(attrs.axis as number | number[], x.shape);
      let count = 1;
      for (const a of axes) count *= x.shape[a];
      return { x: () => expandReduced(single(dy), x.shape, attrs.axis, 1 / count) };
    },
  },
  {
    kernelName: "Sum",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => ({ x: () => expandReduced(single(dy), x.shape, attrs.axis) }),
  },
  {
    kernelName: "Softmax",
    outputsToSave: [true],
    gradFunc: (dy, [y], attrs) => {
      const dim = attrs.dim as number;
      return {
        logits: () => {
          const dyY = tf.mul(single(dy), y);
          return tf.sub(dyY, tf.mul(tf.sum(dyY, [dim], true), y));
        },
      };
    },
  },
  {
    kernelName: "BatchMatMul",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, [a, b], attrs) => {
      const g = single(dy);
      const ta = attrs.transposeA as boolean;
      const tb = attrs.transposeB as boolean;
      // Explicit transposes instead of transpose flags keep the products on wasm's XNNPACK path.
      const mm = (x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y);
      let da: () => tf.Tensor;
      let db: () => tf.Tensor;
      if (!ta && !tb) {
        da = () => mm(g, swapLast(b));
        db = () => mm(swapLast(a), g);
      } else if (!ta && tb) {
        da = () => mm(g, b);
        db = () => mm(swapLast(g), a);
      } else if (ta && !tb) {
        da = () => mm(b, swapLast(g));
        db = () => mm(a, g);
      } else {
        da = () => mm(swapLast(b), swapLast(g));
        db = () => mm(swapLast(g), swapLast(a));
      }
      return { a: () => unbroadcast(da(), a.shape), b: () => unbroadcast(db(), b.shape) };
    },
  },
  {
    kernelName: "Conv2D",
    inputsToSave: ["x", "filter"],
    gradFunc: (dy, [x, filter], attrs) => {
      const dilations = attrs.dilations as number | [number, number];
      const d = Array.isArray(dilations) ? dilations : [dilations, dilations];
      if (d[0] !== 1 || d[1] !== 1)
        throw new Error("Conv2D gradient: dilations other than 1 are not supported");
      const common = {
        strides: attrs.strides,
        pad: attrs.pad,
        dataFormat: attrs.dataFormat,
        dimRoundingMode: attrs.dimRoundingMode,
      };
      const g = single(dy);
      return {
        x: () =>
          tf.engine().runKernel("Conv2DBackpropInput", { dy: g, filter }, {
            ...common,
            inputShape: x.shape,
          } as never) as tf.Tensor,
        filter: () =>
          tf.engine().runKernel("Conv2DBackpropFilter", { x, dy: g }, {
            ...common,
            filterShape: filter.shape,
          } as never) as tf.Tensor,
      };
    },
  },
  {
    kernelName: "PadV2",
    inputsToSave: ["x"],
    gradFunc: (dy, [x], attrs) => {
      const pads = attrs.paddings as [number, number][];
      const begin = pads.map((p) => p[0]);
      return { x: () => tf.slice(single(dy), begin, x.shape) };
    },
  },
];

let registered = false;

/** Registers the gradients above for kernels that have none yet (idempotent). */
export function registerGradients(): void {
  if (registered) return;
  registered = true;
  for (const c of configs) {
    if (tf.getGradient(c.kernelName) === undefined) tf.registerGradient(c as unknown as tf.GradConfig);
  }
}

/** Kernel names this module provides gradients for. */
export const GRADIENT_KERNELS: readonly string[] = configs.map((c) => c.kernelName);

registerGradients();
