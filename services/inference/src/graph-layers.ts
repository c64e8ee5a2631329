import type { SafetensorsTensor } from "@idpo/diffusion";
import type { OnnxGraphBuilder } from "./onnx-graph.js";

/** A checkpoint's weights on the host: name → shape and values. */
export type Weights = ReadonlyMap<string, SafetensorsTensor>;

/**
 * The diffusion library's layers written as ONNX nodes, in the same arithmetic order as the tfjs
 * forward pass (libs/diffusion) so that the two agree to float32 rounding. Images are NCHW inside the
 * graph (ONNX's Conv layout); the tfjs weights, stored for NHWC, are transposed once at build time.
 */
export class GraphLayers {
  constructor(
    readonly g: OnnxGraphBuilder,
    private readonly weights: Weights,
  ) {}

  /** Looks a weight up, failing with its name. */
  weight(name: string): SafetensorsTensor {
    const w = this.weights.get(name);
    if (!w) throw new Error(`onnx graph: missing weight ${name}`);
    return w;
  }

  /** A weight as an initializer, unchanged. */
  param(name: string): string {
    const w = this.weight(name);
    return this.g.floats(name, w.shape, w.data);
  }

  /** A per-channel vector `[c]` as `[c, 1, 1]`, to broadcast over NCHW. */
  channelParam(name: string): string {
    const w = this.weight(name);
    return this.g.floats(name, [w.shape[0], 1, 1], w.data);
  }

  /** x·W (+ b) on the last axis of any-rank x. */
  linear(x: string, w: string, b?: string): string {
    const y = this.g.op("MatMul", [x, this.param(w)]);
    return b ? this.g.op("Add", [y, this.param(b)]) : y;
  }

  /** x·σ(x). */
  silu(x: string): string {
    return this.g.op("Mul", [x, this.g.op("Sigmoid", [x])]);
  }

  /** GELU, tanh approximation, in the tfjs library's order: x·0.5·(tanh((x + x²·x·c)·√(2/π)) + 1). */
  gelu(x: string): string {
    const g = this.g;
    const cube = g.op("Mul", [g.op("Mul", [x, x]), x]);
    const inner = g.op("Mul", [
      g.op("Add", [x, g.op("Mul", [cube, g.scalar(0.044715)])]),
      g.scalar(Math.sqrt(2 / Math.PI)),
    ]);
    return g.op("Mul", [g.op("Mul", [x, g.scalar(0.5)]), g.op("Add", [g.op("Tanh", [inner]), g.scalar(1)])]);
  }

  /** LayerNorm over the last axis, ε = 1e-5. */
  layerNorm(x: string, prefix: string): string {
    return this.g.op("LayerNormalization", [x, this.param(`${prefix}.g`), this.param(`${prefix}.b`)], {
      axis: { i: -1 },
      epsilon: { f: 1e-5 },
    });
  }

  /**
   * GroupNorm on NCHW `[n, c, h, w]`: InstanceNormalization over `[n, groups, c/groups·h·w]` (population
   * variance, ε = 1e-5, as the tfjs version), then the per-channel affine transform.
   */
  groupNorm(x: string, prefix: string, groups: number, c: number, h: number, w: number): string {
    const g = this.g;
    const grouped = g.op("Reshape", [x, g.int64s([0, groups, -1])]);
    const normed = g.op(
      "InstanceNormalization",
      [
        grouped,
        g.floats("ones", [groups], new Float32Array(groups).fill(1)),
        g.floats("zeros", [groups], new Float32Array(groups)),
      ],
      { epsilon: { f: 1e-5 } },
    );
    const back = g.op("Reshape", [normed, g.int64s([0, c, h, w])]);
    return g.op("Add", [
      g.op("Mul", [back, this.channelParam(`${prefix}.g`)]),
      this.channelParam(`${prefix}.b`),
    ]);
  }

  /**
   * k×k convolution with tfjs's "same" padding on an even side (the UNet config guarantees one wherever
   * it downsamples): symmetric for stride 1; for stride 2 the one padding row and column go at the
   * bottom and right.
   */
  conv(x: string, prefix: string, stride = 1): string {
    const w = this.weight(`${prefix}.w`);
    const [kh, kw, cin, cout] = w.shape;
    const t = new Float32Array(w.data.length);
    // [kh, kw, cin, cout] → [cout, cin, kh, kw]
    for (let y = 0; y < kh; y++)
      for (let z = 0; z < kw; z++)
        for (let i = 0; i < cin; i++)
          for (let o = 0; o < cout; o++)
            t[((o * cin + i) * kh + y) * kw + z] = w.data[((y * kw + z) * cin + i) * cout + o];
    const padTotal = kh - stride;
    const before = Math.floor(Math.max(0, padTotal) / 2);
    const after = Math.max(0, padTotal) - before;
    return this.g.op(
      "Conv",
      [x, this.g.floats(`${prefix}.w`, [cout, cin, kh, kw], t), this.param(`${prefix}.b`)],
      {
        kernel_shape: { ints: [kh, kw] },
        strides: { ints: [stride, stride] },
        pads: { ints: [before, before, after, after] },
      },
    );
  }

  /** A linear layer on the channel axis of NCHW input, as a 1×1 convolution. */
  conv1x1(x: string, prefix: string): string {
    const w = this.weight(`${prefix}.w`);
    const [cin, cout] = w.shape;
    const t = new Float32Array(w.data.length);
    for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) t[o * cin + i] = w.data[i * cout + o];
    return this.g.op(
      "Conv",
      [x, this.g.floats(`${prefix}.w`, [cout, cin, 1, 1], t), this.param(`${prefix}.b`)],
      {
        kernel_shape: { ints: [1, 1] },
      },
    );
  }

  /**
   * Multi-head attention on projected rows: q `[n, queries, c]`, k and v `[n, keys, c]`, bias
   * `[n, 1, 1, keys]` (additive key mask). Returns `[n, queries, c]`.
   */
  attention(
    q: string,
    k: string,
    v: string,
    bias: string,
    shape: { heads: number; c: number; queries: number; keys: number },
  ): string {
    const { heads, c, queries, keys } = shape;
    const g = this.g;
    const d = c / heads;
    const qh = g.op("Transpose", [g.op("Reshape", [q, g.int64s([0, queries, heads, d])])], {
      perm: { ints: [0, 2, 1, 3] },
    });
    const kt = g.op("Transpose", [g.op("Reshape", [k, g.int64s([0, keys, heads, d])])], {
      perm: { ints: [0, 2, 3, 1] },
    });
    const vh = g.op("Transpose", [g.op("Reshape", [v, g.int64s([0, keys, heads, d])])], {
      perm: { ints: [0, 2, 1, 3] },
    });
    const scores = g.op("Add", [g.op("Mul", [g.op("MatMul", [qh, kt]), g.scalar(1 / Math.sqrt(d))]), bias]);
    const weights = g.op("Softmax", [scores], { axis: { i: -1 } });
    const out = g.op("Transpose", [g.op("MatMul", [weights, vh])], { perm: { ints: [0, 2, 1, 3] } });
    return g.op("Reshape", [out, g.int64s([0, queries, c])]);
  }
}
