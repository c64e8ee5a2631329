import * as tf from "@tensorflow/tfjs-core";
import { type WasmMemory, wasmApi } from "./wasm-api.js";

/** What idpo reads of the emscripten module behind the wasm backend. */
interface EmscriptenModule {
  _malloc(bytes: number): number;
  _free(ptr: number): void;
  /** The memory of the single-threaded binaries (exported by the module). */
  asm?: { memory?: WasmMemory };
  /** The memory of the threaded binary (created by its loader, shared). */
  wasmMemory?: WasmMemory;
}

interface TensorData {
  memoryOffset: number;
  refCount: number;
}

interface WasmBackendInternals {
  wasm?: EmscriptenModule;
  dataIdMap?: { get(id: object): TensorData | undefined };
}

/**
 * The tfjs wasm backend's heap as idpo's SIMD modules use it: tensors' byte offsets, scratch memory, views.
 * Views must be taken after any allocation (malloc, or a kernel's output), which may grow and so detach
 * the heap.
 */
export class WasmHeap {
  private constructor(
    readonly memory: WasmMemory,
    private readonly wasm: EmscriptenModule,
    private readonly data: NonNullable<WasmBackendInternals["dataIdMap"]>,
  ) {}

  /** The heap of `backend` (default: the active tfjs backend), or undefined where it is not the wasm one. */
  static of(backend: object = tf.backend()): WasmHeap | undefined {
    const b = backend as WasmBackendInternals;
    const memory = b.wasm?.asm?.memory ?? b.wasm?.wasmMemory;
    if (!(memory instanceof wasmApi.Memory) || typeof b.wasm?._malloc !== "function" || !b.dataIdMap) {
      return undefined;
    }
    return new WasmHeap(memory, b.wasm, b.dataIdMap);
  }

  /** Byte offset of a tensor's data. */
  ptr(t: tf.TensorInfo): number {
    const d = this.data.get(t.dataId);
    if (!d) throw new Error("WasmHeap: the tensor has no data on this backend (disposed?)");
    return d.memoryOffset;
  }

  /** Whether a tensor's data belongs to it alone, so that writing it in place changes no other tensor. */
  exclusive(t: tf.TensorInfo): boolean {
    return this.data.get(t.dataId)?.refCount === 1;
  }

  /** A float32 view of n values at a byte offset. */
  f32(ptr: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  /** Runs `fn` with `floats` float32 values of scratch on the heap. */
  withScratch<T>(floats: number, fn: (ptr: number) => T): T {
    const ptr = this.wasm._malloc(floats * 4);
    try {
      return fn(ptr);
    } finally {
      this.wasm._free(ptr);
    }
  }
}

const instances = new WeakMap<WasmMemory, Map<string, unknown>>();

function decode(b64: string): Uint8Array {
  return Uint8Array.from(Buffer.from(b64, "base64"));
}

/**
 * A generated SIMD module (`src/gen/*-wasm.ts`) instantiated on `memory`, once per memory: the
 * shared-memory build for a shared one. Throws where the runtime has no wasm SIMD.
 */
export function instantiateOn<T>(memory: WasmMemory, plain: string, shared: string): T {
  let byModule = instances.get(memory);
  if (!byModule) {
    byModule = new Map();
    instances.set(memory, byModule);
  }
  let ex = byModule.get(plain) as T | undefined;
  if (!ex) {
    const isShared = typeof SharedArrayBuffer !== "undefined" && memory.buffer instanceof SharedArrayBuffer;
    const bytes = decode(isShared ? shared : plain);
    const instance = new wasmApi.Instance(new wasmApi.Module(bytes), { env: { memory } });
    ex = instance.exports as T;
    byModule.set(plain, ex);
  }
  return ex;
}
