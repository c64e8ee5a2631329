import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Worker, type WorkerOptions } from "node:worker_threads";
import { BackendWasm, getThreadsCount, setThreadsCount } from "@tensorflow/tfjs-backend-wasm";
import * as tf from "@tensorflow/tfjs-core";
import { wasmApi } from "./wasm-api.js";

const require = createRequire(import.meta.url);

/** worker_threads.Worker without inherited execArgv (loader hooks would try to transform the worker). */
class PlainWorker extends Worker {
  constructor(filename: string | URL, options?: WorkerOptions) {
    super(filename, { ...options, execArgv: [] });
  }
}

/** Upper bound of the C++ pool: the emscripten module pre-creates 8 pthread workers. */
export const MAX_WASM_THREADS = 8;

/** The emscripten module object after instantiation, as BackendWasm expects it. */
interface EmscriptenModule {
  cwrap: (name: string, ret: string | null, args: string[]) => (...a: number[]) => number;
  tfjs?: Record<string, unknown>;
  [key: string]: unknown;
}

type Factory = (config: Record<string, unknown>) => Promise<EmscriptenModule>;

/** Paths of the files shipped by @tensorflow/tfjs-backend-wasm that the threaded build needs. */
function shippedPaths(): { factoryJs: string; wasm: string; workerSource: string } {
  const pkgDir = dirname(require.resolve("@tensorflow/tfjs-backend-wasm/package.json"));
  return {
    factoryJs: join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.js"),
    wasm: join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.wasm"),
    workerSource: join(pkgDir, "wasm-out", "tfjs-backend-wasm-threaded-simd.worker.js"),
  };
}

/**
 * The package ships the pthread worker only as a string export (meant for a blob: URL, which Node's
 * worker_threads cannot start). Write it once to a real .cjs file named by its content hash.
 */
function materialiseWorker(workerSourceModule: string): string {
  const { wasmWorkerContents } = require(workerSourceModule) as { wasmWorkerContents: string };
  // The template literal it is shipped in turned the source's "\\n" escapes into newlines; the stock
  // loader escapes them back the same way before making its blob.
  const source = wasmWorkerContents.replace(/\n/g, "\\n");
  const hash = createHash("sha256").update(source).digest("hex").slice(0, 16);
  const path = join(tmpdir(), `idpo-tfjs-wasm-threaded-worker-${hash}.cjs`);
  if (!existsSync(path)) {
    // Write then rename, so a concurrent process never starts a half-written worker.
    const partial = `${path}.${process.pid}.partial`;
    writeFileSync(partial, source);
    renameSync(partial, path);
  }
  return path;
}

/** The process's error listeners now (to find the ones emscripten adds). */
function processListeners() {
  return {
    uncaughtException: process.listeners("uncaughtException"),
    unhandledRejection: process.listeners("unhandledRejection"),
  };
}

/**
 * Emscripten installs process handlers that only rethrow (what Node does anyway) but make every
 * uncaught error in the process print the whole minified module as its source line; take them off.
 */
function removeAddedListeners(before: ReturnType<typeof processListeners>): void {
  for (const listener of process.listeners("uncaughtException")) {
    if (!before.uncaughtException.includes(listener)) process.removeListener("uncaughtException", listener);
  }
  for (const listener of process.listeners("unhandledRejection")) {
    if (!before.unhandledRejection.includes(listener)) process.removeListener("unhandledRejection", listener);
  }
}

/**
 * Instantiates the threaded SIMD emscripten module with a pool of `threads` XNNPACK threads.
 *
 * The C++ side computes its cap as emscripten_num_logical_cores() / 2 (assuming hyper-threads) when its
 * globals are constructed; answering 2 × threads there makes the pool exactly `threads` wide.
 */
async function instantiateThreaded(threads: number): Promise<EmscriptenModule> {
  const paths = shippedPaths();
  const factory = require(paths.factoryJs) as Factory;
  const workerPath = materialiseWorker(paths.workerSource);
  const binary = readFileSync(paths.wasm);
  const listeners = processListeners();
  // Emscripten waits forever when a custom instantiateWasm fails; race it against the failure.
  let failInstantiation: (error: Error) => void = () => {};
  const instantiationFailure = new Promise<never>((_, reject) => {
    failInstantiation = reject;
  });
  const modulePromise = factory({
    locateFile: (path: string, prefix: string) => {
      if (path.endsWith(".worker.js")) {
        // Emscripten calls this right before `new Worker(path)`, after it set the global Worker to
        // worker_threads.Worker. Start pthread workers without the parent's loader flags (tsx, vitest):
        // the worker is plain CommonJS, and a TypeScript loader rejects it.
        (globalThis as { Worker?: unknown }).Worker = PlainWorker;
        return workerPath;
      }
      if (path.endsWith(".wasm")) return paths.wasm;
      return prefix + path;
    },
    instantiateWasm: (
      imports: { env: Record<string, unknown> },
      receiveInstance: (instance: unknown, module: unknown) => void,
    ) => {
      imports.env.emscripten_num_logical_cores = () => 2 * threads;
      wasmApi.instantiate(binary, imports).then(
        (result) => receiveInstance(result.instance, result.module),
        (error: unknown) =>
          failInstantiation(new Error(`instantiating ${paths.wasm} failed: ${String(error)}`)),
      );
      return {};
    },
  });
  removeAddedListeners(listeners);
  const module = await Promise.race([modulePromise, instantiationFailure]);
  unrefWorkers(module);
  // The same bridge the stock loader attaches (BackendWasm and every kernel's setup use it).
  module.tfjs = {
    init: module.cwrap("init", null, []),
    initWithThreadsCount: module.cwrap("init_with_threads_count", null, ["number"]),
    getThreadsCount: module.cwrap("get_threads_count", "number", []),
    registerTensor: module.cwrap("register_tensor", null, ["number", "number", "number"]),
    disposeData: module.cwrap("dispose_data", null, ["number"]),
    dispose: module.cwrap("dispose", null, []),
  };
  return module;
}

interface PThreadRegistry {
  unusedWorkers: Worker[];
  runningWorkers: Worker[];
}

/**
 * Emscripten ref()s a worker while its pthread runs, and XNNPACK's pool threads run for the life of the
 * backend, so the process would never exit on its own. The pool only ever serves the main thread's
 * synchronous kernel calls, so nothing is lost by letting the event loop ignore it.
 */
function unrefWorkers(module: EmscriptenModule): void {
  const pthread = module.PThread as PThreadRegistry | undefined;
  if (pthread == null) return;
  for (const worker of [...pthread.unusedWorkers, ...pthread.runningWorkers]) worker.unref();
}

/** Result of registering the wasm backend. */
export interface WasmLoadResult {
  /** XNNPACK pool size actually created. */
  threads: number;
  /** Which binary was loaded. */
  binary: "threaded-simd" | "simd";
  /** Why the threaded binary was not used, when it was not. */
  fallbackReason?: string;
}

// The stock registration, kept so that a failed threaded load can fall back to it.
const stockFactory = tf.findBackendFactory("wasm");

/**
 * Replaces the stock "wasm" backend registration (which in Node always loads the single-threaded
 * binary) by one that loads the threaded SIMD binary with `threads` XNNPACK threads, and makes it the
 * active backend. `threads` = 1 keeps the stock single-threaded SIMD binary (no worker threads).
 */
export async function activateWasm(threads: number): Promise<WasmLoadResult> {
  if (!Number.isInteger(threads) || threads < 1 || threads > MAX_WASM_THREADS) {
    throw new Error(`wasm threads must be an integer in [1, ${MAX_WASM_THREADS}], got ${threads}`);
  }
  if (stockFactory == null) {
    throw new Error("@tensorflow/tfjs-backend-wasm did not register its 'wasm' backend");
  }
  let fallbackReason: string | undefined;
  let backend: tf.KernelBackend | undefined;
  if (threads > 1) {
    try {
      setThreadsCount(threads);
      // Built here rather than inside the registered factory so that a failure keeps its message
      // (tf.setBackend only warns and returns false).
      const module = await instantiateThreaded(threads);
      backend = new BackendWasm(module as never);
      // The constructor started the pool's pthreads (ref'ing their workers).
      unrefWorkers(module);
    } catch (error) {
      fallbackReason = `threaded wasm failed: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  if (backend == null) {
    setThreadsCount(1);
    const listeners = processListeners();
    backend = (await stockFactory()) as tf.KernelBackend;
    removeAddedListeners(listeners);
  }
  const instance = backend;
  tf.removeBackend("wasm");
  tf.registerBackend("wasm", () => instance, 2);
  if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend('wasm') failed");
  return {
    threads: getThreadsCount(),
    binary: threads > 1 && fallbackReason == null ? "threaded-simd" : "simd",
    ...(fallbackReason ? { fallbackReason } : {}),
  };
}
