import * as tf from "@tensorflow/tfjs-core";
import { OPTIMIZER_SIMD_PLAIN, OPTIMIZER_SIMD_SHARED } from "../gen/optimizer-simd-wasm.js";
import { instantiateOn, WasmHeap } from "./wasm-heap.js";

/** The exports of kernels/optimizer-simd.wat (pointers are byte offsets into the tfjs heap). */
interface OptimizerSimdExports {
  adamw(
    p: number,
    out: number,
    g: number,
    m: number,
    v: number,
    n: number,
    b1: number,
    c1: number,
    b2: number,
    c2: number,
    s1: number,
    s2: number,
    eps: number,
    decay: number,
  ): void;
  ema(shadow: number, p: number, n: number, d: number, c: number): void;
}

/** AdamW's scalars for one update, as adamw.ts's tensor ops use them. */
export interface AdamWScalars {
  beta1: number;
  beta2: number;
  eps: number;
  /** lr / (1 − β1^k). */
  stepScale: number;
  /** √(1 − β2^k). */
  sqrtC2: number;
  /** 1 − lr·weightDecay. */
  decay: number;
}

/**
 * AdamW and EMA updates on the tfjs wasm heap, one SIMD pass per parameter tensor instead of a dozen
 * tensor ops over the flat vectors plus a split per parameter. The same floats as the tensor ops
 * (kernels/optimizer-simd.wat follows their order of operations). The moments and the EMA are written in
 * place, and only where their data is theirs alone; each weight gets a new buffer, assigned to its
 * variable, since the backend caches packed copies of weights by tensor. Other backends keep the tensor ops.
 */
export class OptimizerSimd {
  private constructor(
    private readonly heap: WasmHeap,
    private readonly ex: OptimizerSimdExports,
  ) {}

  /** The updates on the active backend's heap, or undefined where it is not wasm (or has no SIMD). */
  static active(): OptimizerSimd | undefined {
    const heap = WasmHeap.of();
    if (!heap) return undefined;
    try {
      return new OptimizerSimd(
        heap,
        instantiateOn<OptimizerSimdExports>(heap.memory, OPTIMIZER_SIMD_PLAIN, OPTIMIZER_SIMD_SHARED),
      );
    } catch {
      return undefined;
    }
  }

  /**
   * One AdamW update of `params` (in flat-layout order, at `offsets`) from the flat gradient `g`, with the
   * flat moments `m` and `v`. Returns false, having written nothing, where a moment shares its data (the
   * caller then takes the tensor-op path).
   */
  adamw(
    params: readonly tf.Variable[],
    offsets: readonly number[],
    g: tf.Tensor,
    m: tf.Variable,
    v: tf.Variable,
    s: AdamWScalars,
  ): boolean {
    if (!this.heap.exclusive(m) || !this.heap.exclusive(v)) return false;
    const backend = tf.backend() as unknown as {
      makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
    };
    // Allocate every output first: an allocation can grow the heap, which moves nothing but is cleaner to
    // finish before the passes run.
    const outs = params.map((p) => backend.makeOutput([...p.shape], "float32"));
    const [pg, pm, pv] = [this.heap.ptr(g), this.heap.ptr(m), this.heap.ptr(v)];
    for (let i = 0; i < params.length; i++) {
      const off = offsets[i] * 4;
      this.ex.adamw(
        this.heap.ptr(params[i]),
        this.heap.ptr(outs[i]),
        pg + off,
        pm + off,
        pv + off,
        params[i].size,
        s.beta1,
        1 - s.beta1,
        s.beta2,
        1 - s.beta2,
        s.stepScale,
        s.sqrtC2,
        s.eps,
        s.decay,
      );
    }
    for (let i = 0; i < params.length; i++) {
      const t = tf.engine().makeTensorFromTensorInfo(outs[i]);
      params[i].assign(t);
      t.dispose();
    }
    return true;
  }

  /** shadow ← shadow·d + params·(1 − d) over the flat layout; false, having written nothing, as adamw. */
  ema(shadow: tf.Variable, params: readonly tf.Variable[], offsets: readonly number[], d: number): boolean {
    if (!this.heap.exclusive(shadow)) return false;
    const ps = this.heap.ptr(shadow);
    for (let i = 0; i < params.length; i++) {
      this.ex.ema(ps + offsets[i] * 4, this.heap.ptr(params[i]), params[i].size, d, 1 - d);
    }
    return true;
  }
}
