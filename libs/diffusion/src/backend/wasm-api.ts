/**
 * The WebAssembly global, typed to what idpo calls (the project's lib has no DOM/wasm types: ES2023 and
 * Node's).
 */

/** A linear memory (`shared` ones are backed by a SharedArrayBuffer). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
}

/** A compiled module. */
export type WasmModule = object;

/** An instantiated module. */
export interface WasmInstance {
  readonly exports: Record<string, unknown>;
}

interface WasmApi {
  Memory: new (desc: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => WasmInstance;
  instantiate(binary: Uint8Array, imports: object): Promise<{ instance: unknown; module: unknown }>;
  validate(bytes: Uint8Array): boolean;
}

export const wasmApi = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
