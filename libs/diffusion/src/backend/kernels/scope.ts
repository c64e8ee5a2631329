import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";

/** A tensor as kernels see it (no engine bookkeeping). */
export type Info = tf.TensorInfo;

export type KernelFunc = (args: {
  inputs: tf.NamedTensorInfoMap;
  backend: BackendWasm;
  attrs?: tf.NamedAttrMap;
}) => Info;

// The stock wasm kernels, captured before idpo replaces any of them, so that replacements can call the
// originals (and each other) without going through the engine.
const stock = new Map<string, KernelFunc>();

/** Records the stock wasm kernel of `name` (call before replacing it). */
export function captureStock(name: string): void {
  if (stock.has(name)) return;
  const config = tf.getKernel(name, "wasm");
  if (config == null) return;
  stock.set(name, config.kernelFunc as unknown as KernelFunc);
}

// Replacements that composite kernels should call instead of the stock kernel (set for kernels whose
// replacement is a drop-in speed-up, such as Slice; not for BatchMatMul, whose replacement itself
// relies on the stock fast path).
const preferred = new Map<string, KernelFunc>();

/** Makes Scope.run use `kernel` for `name` instead of the stock wasm kernel. */
export function preferInside(name: string, kernel: KernelFunc): void {
  preferred.set(name, kernel);
}

/** The stock wasm kernel of `name` (throws when the wasm backend has none). */
export function stockKernel(name: string): KernelFunc {
  captureStock(name);
  const kernel = stock.get(name);
  if (kernel == null) throw new Error(`idpo wasm kernels: the wasm backend has no ${name} kernel`);
  return kernel;
}

/**
 * Runs wasm kernels on TensorInfos inside a kernel and disposes every intermediate it made, except the
 * result handed to finish(). The engine only tracks a kernel's inputs and outputs, so intermediates that a
 * composite kernel creates must be freed by hand.
 */
export class Scope {
  private readonly temps: Info[] = [];

  constructor(readonly backend: BackendWasm) {}

  /** Runs the wasm kernel `name` (stock, or its drop-in replacement set by preferInside) and tracks its output. */
  run(name: string, inputs: tf.NamedTensorInfoMap, attrs: tf.NamedAttrMap = {}): Info {
    const out = (preferred.get(name) ?? stockKernel(name))({ inputs, backend: this.backend, attrs });
    this.temps.push(out);
    return out;
  }

  /** Tracks a tensor made outside run() so that finish() disposes it. */
  track(x: Info): Info {
    this.temps.push(x);
    return x;
  }

  reshape(x: Info, shape: number[]): Info {
    return this.run(tf.Reshape, { x }, { shape });
  }

  transpose(x: Info, perm: number[]): Info {
    return this.run(tf.Transpose, { x }, { perm });
  }

  /** 2-D a @ b without transposes: the XNNPACK fully-connected path of the stock BatchMatMul. */
  matMul2d(a: Info, b: Info): Info {
    const a3 = this.reshape(a, [1, a.shape[0], a.shape[1]]);
    const b3 = this.reshape(b, [1, b.shape[0], b.shape[1]]);
    const out = this.run(tf.BatchMatMul, { a: a3, b: b3 }, { transposeA: false, transposeB: false });
    return this.reshape(out, [a.shape[0], b.shape[1]]);
  }

  /** Pads (positive amounts) or crops (negative amounts) each axis at its start and end. */
  padOrCrop(x: Info, amounts: Array<[number, number]>): Info {
    let current = x;
    const needsCrop = amounts.some(([lo, hi]) => lo < 0 || hi < 0);
    if (needsCrop) {
      const begin = amounts.map(([lo]) => Math.max(0, -lo));
      const size = amounts.map(([lo, hi], axis) => current.shape[axis] - Math.max(0, -lo) - Math.max(0, -hi));
      current = this.run(tf.Slice, { x: current }, { begin, size });
    }
    if (amounts.some(([lo, hi]) => lo > 0 || hi > 0)) {
      const paddings = amounts.map(([lo, hi]) => [Math.max(0, lo), Math.max(0, hi)]);
      current = this.run(tf.PadV2, { x: current }, { paddings, constantValue: 0 });
    }
    return current;
  }

  /** Stops tracking `out` (the kernel's result) and disposes every other intermediate. */
  finish(out: Info): Info {
    const index = this.temps.lastIndexOf(out);
    if (index >= 0) this.temps.splice(index, 1);
    for (const t of this.temps) this.backend.disposeData(t.dataId);
    this.temps.length = 0;
    return out;
  }

  /** Disposes every intermediate (for error paths). */
  dispose(): void {
    for (const t of this.temps) this.backend.disposeData(t.dataId);
    this.temps.length = 0;
  }
}

/** Runs `body` in a Scope, returning its result and freeing everything else even when it throws. */
export function withScope(backend: BackendWasm, body: (s: Scope) => Info): Info {
  const scope = new Scope(backend);
  try {
    return scope.finish(body(scope));
  } catch (error) {
    scope.dispose();
    throw error;
  }
}
