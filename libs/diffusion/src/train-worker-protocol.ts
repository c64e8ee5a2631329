import type { BackendName } from "./backend/index.js";
import type { DiffusionConfig } from "./model.js";
import type { ObjectiveDraws, ObjectiveSpec } from "./split-objective.js";

/** A model as a training worker rebuilds it: architecture and parameter names and shapes, in layout order. */
export interface WorkerModel {
  /** Architecture. */
  config: DiffusionConfig;
  /** Parameter names in the flat layout's order. */
  names: string[];
  /** Their shapes. */
  shapes: number[][];
}

/** What a training worker starts with (its workerData). */
export interface TrainWorkerInit {
  /** Backend the worker initialises, with one compute thread. */
  backend: BackendName;
  /** The trained model; its weights are read from `weights` at every step. */
  model: WorkerModel;
  /** DPO/SPIN: the frozen reference with its weights (flat, in its names' order). */
  reference?: WorkerModel & { values: Float32Array };
  /** The objective to rebuild. */
  spec: ObjectiveSpec;
  /** The current weights, flat (float32), written by the parent before each step. */
  weights: SharedArrayBuffer;
  /** One flat float32 gradient per worker, back to back; this worker writes slot `slot`. */
  grads: SharedArrayBuffer;
  /** This worker's index. */
  slot: number;
}

/** One slice of one microbatch for a worker. */
export interface TrainTask {
  /** The slice of the microbatch. */
  batch: unknown;
  /** The slice of the microbatch's draws. */
  draws: ObjectiveDraws;
  /** Slice size / microbatch size: the slice's share of the microbatch's mean loss. */
  weight: number;
}

/** Parent → worker. */
export type ToTrainWorker = { type: "step"; tasks: TrainTask[] };

/** What a worker reports of one task: metric values and how much each weighs when slices combine. */
export interface TaskMetrics {
  values: Record<string, number>;
  weights: Record<string, number>;
}

/** Worker → parent. */
export type FromTrainWorker =
  | { type: "ready"; threads: number }
  | { type: "done"; tasks: TaskMetrics[] }
  | { type: "error"; message: string };
