import { availableParallelism } from "node:os";
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { registerWasmKernels } from "./wasm-kernels.js";
import { activateWasm, MAX_WASM_THREADS } from "./wasm-threaded.js";

/** The compute backends initBackend knows, in its automatic order of preference. */
export const BACKEND_NAMES = ["tensorflow-gpu", "tensorflow", "wasm", "cpu"] as const;

/** One of BACKEND_NAMES ("tensorflow-gpu" is @tensorflow/tfjs-node-gpu, "tensorflow" is tfjs-node). */
export type BackendName = (typeof BACKEND_NAMES)[number];

/** Environment variable that forces a backend (one of BACKEND_NAMES). */
export const BACKEND_ENV = "IDPO_TF_BACKEND";
/** Environment variable that sets the compute thread count (a positive integer). */
export const THREADS_ENV = "IDPO_TF_THREADS";

/** One backend initBackend tried, and why it was not taken. */
export interface BackendAttempt {
  /** Backend tried. */
  backend: BackendName;
  /** Whether it was initialised and chosen. */
  ok: boolean;
  /** Why it failed (absent when ok). */
  reason?: string;
}

/** What initBackend chose. */
export interface BackendInfo {
  /** The chosen backend. */
  name: BackendName;
  /** tfjs's name of the active backend (tf.getBackend()): "tensorflow", "wasm" or "cpu". */
  tfBackend: string;
  /** Compute threads: the XNNPACK pool size on wasm, 1 on cpu, TensorFlow's intra-op threads on tfjs-node. */
  threads: number;
  /** How the backend was picked: an explicit option, the environment variable, or the automatic order. */
  source: "option" | "env" | "auto";
  /** Every backend tried, in order, with the failure reasons. */
  tried: BackendAttempt[];
  /** wasm only: which binary is loaded ("threaded-simd" when threads > 1). */
  wasmBinary?: "threaded-simd" | "simd";
  /** wasm only: why the threaded binary was not used when it was asked for. */
  wasmFallbackReason?: string;
  /** wasm only: kernels idpo registers or replaces on the wasm backend. */
  kernels?: string[];
  /** tensorflow backends only: whether TensorFlow reports a GPU device. */
  gpu?: boolean;
}

/** Options of initBackend. */
export interface InitBackendOptions {
  /** Backend to use; when set, failing to initialise it is an error. Overrides IDPO_TF_BACKEND. */
  backend?: BackendName;
  /** Compute threads (default IDPO_TF_THREADS, else the machine's available parallelism). */
  threads?: number;
  /** Where the choice is logged (default: one JSON line on stderr). */
  log?: (msg: string, fields?: object) => void;
}

function defaultLog(msg: string, fields?: object): void {
  process.stderr.write(
    `${JSON.stringify({ time: new Date().toISOString(), level: "info", component: "idpo.backend", msg, ...fields })}\n`,
  );
}

function isBackendName(value: string): value is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(value);
}

/** Reads IDPO_TF_BACKEND; unset or empty means automatic. */
function backendFromEnv(): BackendName | undefined {
  const raw = process.env[BACKEND_ENV];
  if (raw == null || raw.trim() === "") return undefined;
  const value = raw.trim();
  if (!isBackendName(value)) {
    throw new Error(
      `${BACKEND_ENV}=${JSON.stringify(raw)} is not a backend; accepted values: ${BACKEND_NAMES.join(", ")} ` +
        "(or unset for the automatic order)",
    );
  }
  return value;
}

function resolveThreads(requested: number | undefined): number {
  if (requested != null) {
    if (!Number.isInteger(requested) || requested < 1) {
      throw new Error(`initBackend: threads must be a positive integer, got ${requested}`);
    }
    return requested;
  }
  const raw = process.env[THREADS_ENV];
  if (raw != null && raw.trim() !== "") {
    const value = Number(raw);
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`${THREADS_ENV}=${JSON.stringify(raw)} is not a positive integer thread count`);
    }
    return value;
  }
  return availableParallelism();
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

type Attempt = Omit<BackendInfo, "tried" | "source" | "name">;

/**
 * Loads tfjs-node(-gpu). The specifier is a variable so that TypeScript and bundlers do not require
 * the optional dependency to be installed.
 */
async function tryTensorflow(gpu: boolean, threads: number, threadsExplicit: boolean): Promise<Attempt> {
  const specifier = gpu ? "@tensorflow/tfjs-node-gpu" : "@tensorflow/tfjs-node";
  // libtensorflow reads its pool sizes from the environment when the first session starts.
  if (threadsExplicit && process.env.TF_NUM_INTRAOP_THREADS == null) {
    process.env.TF_NUM_INTRAOP_THREADS = String(threads);
  }
  try {
    await import(specifier);
  } catch (error) {
    throw new Error(`import("${specifier}") failed: ${message(error)}`);
  }
  if (tf.findBackendFactory("tensorflow") == null) {
    throw new Error(
      `${specifier} loaded but registered no "tensorflow" backend with this @tensorflow/tfjs-core ` +
        `(${tf.version_core}); its tfjs-core is probably a different copy or version`,
    );
  }
  if (!(await tf.setBackend("tensorflow"))) {
    throw new Error(`${specifier} loaded but tf.setBackend("tensorflow") failed`);
  }
  const backend = tf.backend() as { isUsingGpuDevice?: boolean };
  const intraOp = Number(process.env.TF_NUM_INTRAOP_THREADS);
  return {
    tfBackend: tf.getBackend(),
    threads: Number.isInteger(intraOp) && intraOp > 0 ? intraOp : availableParallelism(),
    gpu: backend.isUsingGpuDevice === true,
  };
}

async function tryWasm(threads: number): Promise<Attempt> {
  const capped = Math.min(threads, MAX_WASM_THREADS);
  const loaded = await activateWasm(capped);
  const kernels = registerWasmKernels();
  return {
    tfBackend: tf.getBackend(),
    threads: loaded.threads,
    wasmBinary: loaded.binary,
    ...(loaded.fallbackReason ? { wasmFallbackReason: loaded.fallbackReason } : {}),
    kernels,
  };
}

async function tryCpu(): Promise<Attempt> {
  if (!(await tf.setBackend("cpu"))) throw new Error('tf.setBackend("cpu") failed');
  return { tfBackend: tf.getBackend(), threads: 1 };
}

async function tryBackend(name: BackendName, threads: number, threadsExplicit: boolean): Promise<Attempt> {
  switch (name) {
    case "tensorflow-gpu":
      return tryTensorflow(true, threads, threadsExplicit);
    case "tensorflow":
      return tryTensorflow(false, threads, threadsExplicit);
    case "wasm":
      return tryWasm(threads);
    case "cpu":
      return tryCpu();
  }
}

// The one initialisation of this process (a promise, so that concurrent first calls share it).
let initialised: Promise<BackendInfo> | undefined;

async function choose(opts: InitBackendOptions): Promise<BackendInfo> {
  const log = opts.log ?? defaultLog;
  const fromEnv = backendFromEnv();
  const forced = opts.backend ?? fromEnv;
  const source: BackendInfo["source"] = opts.backend != null ? "option" : fromEnv != null ? "env" : "auto";
  if (opts.backend != null && !isBackendName(opts.backend)) {
    throw new Error(
      `initBackend: unknown backend ${JSON.stringify(opts.backend)}; accepted: ${BACKEND_NAMES.join(", ")}`,
    );
  }
  const threadsExplicit = opts.threads != null || (process.env[THREADS_ENV] ?? "").trim() !== "";
  const threads = resolveThreads(opts.threads);
  const order: readonly BackendName[] = forced != null ? [forced] : BACKEND_NAMES;
  const tried: BackendAttempt[] = [];
  for (const name of order) {
    try {
      const attempt = await tryBackend(name, threads, threadsExplicit);
      tried.push({ backend: name, ok: true });
      const info: BackendInfo = { name, source, tried, ...attempt };
      log("tfjs backend selected", {
        backend: info.name,
        tfBackend: info.tfBackend,
        threads: info.threads,
        source: info.source,
        tried: info.tried,
        ...(info.wasmBinary ? { wasmBinary: info.wasmBinary } : {}),
        ...(info.wasmFallbackReason ? { wasmFallbackReason: info.wasmFallbackReason } : {}),
        ...(info.gpu != null ? { gpu: info.gpu } : {}),
      });
      return info;
    } catch (error) {
      tried.push({ backend: name, ok: false, reason: message(error) });
      if (forced != null) {
        const how = source === "env" ? `${BACKEND_ENV}=${forced}` : `initBackend({ backend: "${forced}" })`;
        throw new Error(`${how}: backend "${forced}" could not be initialised: ${message(error)}`);
      }
    }
  }
  throw new Error(
    `no tfjs backend could be initialised: ${tried.map((t) => `${t.backend}: ${t.reason}`).join("; ")}`,
  );
}

/**
 * Picks and initialises the tfjs compute backend for this process: @tensorflow/tfjs-node-gpu, then
 * @tensorflow/tfjs-node (both optional dependencies), then wasm (threaded, with idpo's fast gradient
 * kernels), then cpu. `opts.backend`, else IDPO_TF_BACKEND, forces one (and failing to load it is an
 * error). The choice and thread count are logged once.
 *
 * Idempotent: later calls return the same info (and make that backend active again if something
 * switched it); asking later for a different backend or thread count is an error.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendInfo> {
  if (initialised == null) {
    const promise = choose(opts);
    initialised = promise;
    promise.catch(() => {
      // A failed initialisation may be retried (for example after fixing the environment variable).
      if (initialised === promise) initialised = undefined;
    });
    return promise;
  }
  const info = await initialised;
  if (opts.backend != null && opts.backend !== info.name) {
    throw new Error(
      `initBackend: the backend is already "${info.name}" in this process; it cannot switch to "${opts.backend}"`,
    );
  }
  if (opts.threads != null && opts.threads !== info.threads && info.name === "wasm") {
    throw new Error(
      `initBackend: wasm already runs ${info.threads} threads in this process; it cannot change to ${opts.threads}`,
    );
  }
  if (tf.getBackend() !== info.tfBackend) await tf.setBackend(info.tfBackend);
  return info;
}
