import type { BackendInfo } from "./backend/index.js";

/**
 * How many data-parallel training workers suit a backend when none is configured. On wasm, one per
 * compute thread the backend was given (IDPO_TF_THREADS, else the machine's cores), each worker
 * running one thread: separate workers scale where one wasm module's thread pool does not. On
 * tfjs-node(-gpu), 1: TensorFlow already uses every core or the process's GPU, and a multi-GPU node
 * runs one trainer process per GPU. On the pure-JS cpu backend (tests, debugging), 1.
 */
export function defaultTrainWorkers(info: BackendInfo): number {
  return info.name === "wasm" ? info.threads : 1;
}
