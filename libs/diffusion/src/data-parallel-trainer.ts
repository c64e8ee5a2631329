import type { Worker } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import type { AdamW } from "./adamw.js";
import { type BackendName, initBackend } from "./backend/index.js";
import type { Ema } from "./ema.js";
import { FlatLayout } from "./flat-params.js";
import type { DiffusionModel } from "./model.js";
import { startModuleWorker } from "./module-worker.js";
import type { Params } from "./params.js";
import { Rng } from "./rng.js";
import type { SplitObjective } from "./split-objective.js";
import type {
  FromTrainWorker,
  TaskMetrics,
  TrainTask,
  TrainWorkerInit,
  WorkerModel,
} from "./train-worker-protocol.js";
import {
  microbatchStream,
  type Objective,
  type StepReport,
  Trainer,
  type TrainerConfig,
  type TrainingDriver,
} from "./trainer.js";

/** Options of DataParallelTrainer.start. */
export interface DataParallelOptions {
  /** Worker threads, each computing the gradient of a slice of every microbatch (≥ 1). */
  workers: number;
  /** Backend of the workers (one compute thread each); default this process's backend (initBackend). */
  backend?: BackendName;
}

/** One worker and the reply it owes. */
interface WorkerSlot {
  worker: Worker;
  pending?: { resolve: (m: TaskMetrics[]) => void; reject: (e: Error) => void };
  failed?: Error;
}

function workerModel(model: DiffusionModel, layout: FlatLayout): WorkerModel {
  return { config: model.config, names: [...layout.names], shapes: layout.shapes.map((s) => [...s]) };
}

function flatValues(params: Params, layout: FlatLayout): Float32Array {
  const out = new Float32Array(layout.total);
  layout.readInto(params, out);
  return out;
}

/** Examples [start, end) of n that worker w of W computes (contiguous, sizes differing by at most one). */
export function sliceBounds(n: number, workers: number, w: number): [number, number] {
  return [Math.floor((w * n) / workers), Math.floor(((w + 1) * n) / workers)];
}

/** Combines the metrics of a microbatch's slices: each metric's mean weighted as its slices say. */
function combineSlices(slices: readonly TaskMetrics[]): Record<string, number> {
  const sums = new Map<string, { total: number; weight: number }>();
  for (const s of slices) {
    for (const [name, v] of Object.entries(s.values)) {
      const w = s.weights[name] ?? 0;
      if (w <= 0) continue;
      const e = sums.get(name) ?? { total: 0, weight: 0 };
      e.total += w * v;
      e.weight += w;
      sums.set(name, e);
    }
  }
  const out: Record<string, number> = {};
  for (const [name, e] of sums) out[name] = e.total / e.weight;
  return out;
}

/**
 * Data-parallel training on one machine: W worker threads, each with its own tfjs backend and one
 * compute thread, compute the gradients of contiguous slices of every microbatch, with the
 * randomness the whole microbatch draws here (so W does not change what is computed, only the
 * float summation order). They read the weights from shared memory and write their gradient sums
 * to their own slot of a shared buffer; this thread adds the slots in worker order and takes the one
 * optimiser step (mean over microbatches, clipping on the averaged gradient, AdamW, EMA) that
 * Trainer.applyGradient takes. Optimiser state, EMA and step counter are the inner Trainer's, so
 * checkpoints and exact resume work as with Trainer.
 *
 * Needs an objective built by the library (pretrainObjective, sftObjective, dpoObjective,
 * spinObjective, improverObjective), which carries its split form. Call dispose() to stop the workers.
 */
export class DataParallelTrainer<B> implements TrainingDriver<B> {
  private busy = false;
  private closed = false;

  private constructor(
    private readonly trainer: Trainer<B>,
    private readonly split: SplitObjective<B>,
    private readonly slots: WorkerSlot[],
    private readonly layout: FlatLayout,
    private readonly weights: Float32Array,
    private readonly grads: Float32Array,
  ) {}

  /**
   * Starts the workers (each loads its backend and builds the models: about a second or two) and
   * resolves once all are ready; rejects, with every worker stopped, if one fails.
   */
  static async start<B>(
    params: Params,
    objective: Objective<B>,
    config: TrainerConfig,
    opts: DataParallelOptions,
  ): Promise<DataParallelTrainer<B>> {
    const split = objective.split as SplitObjective<B> | undefined;
    if (!split) {
      throw new Error("DataParallelTrainer: the objective has no split form (use the library's objectives)");
    }
    if (split.model.params !== params) {
      throw new Error("DataParallelTrainer: params are not the objective's model's parameters");
    }
    if (!Number.isInteger(opts.workers) || opts.workers < 1) {
      throw new Error(`DataParallelTrainer: workers must be a positive integer, got ${opts.workers}`);
    }
    const backend = opts.backend ?? (await initBackend()).name;
    const trainer = new Trainer(params, objective, config);
    const layout = trainer.optimizer.layout;
    const weights = new SharedArrayBuffer(layout.total * 4);
    const grads = new SharedArrayBuffer(opts.workers * layout.total * 4);
    let reference: TrainWorkerInit["reference"];
    if (split.reference) {
      const refLayout = new FlatLayout(split.reference.params);
      reference = {
        ...workerModel(split.reference, refLayout),
        values: flatValues(split.reference.params, refLayout),
      };
    }
    const slots: WorkerSlot[] = [];
    const ready: Promise<void>[] = [];
    for (let w = 0; w < opts.workers; w++) {
      const init: TrainWorkerInit = {
        backend,
        model: workerModel(split.model, layout),
        ...(reference ? { reference } : {}),
        spec: split.spec,
        weights,
        grads,
        slot: w,
      };
      const slot: WorkerSlot = {
        worker: startModuleWorker(new URL("./train-worker.ts", import.meta.url), init),
      };
      slots.push(slot);
      ready.push(DataParallelTrainer.attach(slot, w));
    }
    const dpt = new DataParallelTrainer(
      trainer,
      split,
      slots,
      layout,
      new Float32Array(weights),
      new Float32Array(grads),
    );
    try {
      await Promise.all(ready);
    } catch (e) {
      await dpt.dispose();
      throw e;
    }
    return dpt;
  }

  /** Routes a worker's messages and failures; resolves when it is ready. */
  private static attach(slot: WorkerSlot, index: number): Promise<void> {
    return new Promise<void>((resolveReady, rejectReady) => {
      let started = false;
      const fail = (e: Error) => {
        slot.failed ??= e;
        if (!started) rejectReady(e);
        const p = slot.pending;
        slot.pending = undefined;
        p?.reject(e);
      };
      slot.worker.on("message", (msg: FromTrainWorker) => {
        if (msg.type === "ready") {
          started = true;
          resolveReady();
        } else if (msg.type === "done") {
          const p = slot.pending;
          slot.pending = undefined;
          p?.resolve(msg.tasks);
        } else {
          const e = new Error(`training worker ${index}: ${msg.message}`);
          if (!started) fail(e);
          else {
            // A failed step leaves the worker usable; the step is rejected.
            const p = slot.pending;
            slot.pending = undefined;
            p?.reject(e);
          }
        }
      });
      slot.worker.on("error", (e) => fail(new Error(`training worker ${index} crashed: ${e.message}`)));
      slot.worker.on("exit", (code) => fail(new Error(`training worker ${index} exited (code ${code})`)));
    });
  }

  /** Number of worker threads. */
  get workers(): number {
    return this.slots.length;
  }

  /** The trained weights. */
  get params(): Params {
    return this.trainer.params;
  }

  /** The optimiser (its state is saved for resuming). */
  get optimizer(): AdamW {
    return this.trainer.optimizer;
  }

  /** The EMA of the weights, when kept. */
  get ema(): Ema | undefined {
    return this.trainer.ema;
  }

  /** Optimiser steps taken so far. */
  get stepCount(): number {
    return this.trainer.stepCount;
  }

  /** Sets the step counter (resuming: the LR schedule and the per-step randomness follow it). */
  setStepCount(step: number): void {
    this.trainer.setStepCount(step);
  }

  private run(slot: WorkerSlot, tasks: TrainTask[]): Promise<TaskMetrics[]> {
    if (slot.failed) return Promise.reject(slot.failed);
    return new Promise((resolve, reject) => {
      slot.pending = { resolve, reject };
      slot.worker.postMessage({ type: "step", tasks });
    });
  }

  /** One optimiser step over the given microbatches, their examples spread over the workers. */
  async step(microbatches: readonly B[]): Promise<StepReport> {
    if (this.closed) throw new Error("DataParallelTrainer.step: disposed");
    if (this.busy) throw new Error("DataParallelTrainer.step: a step is already running");
    if (microbatches.length === 0) throw new Error("DataParallelTrainer.step: no microbatches");
    this.busy = true;
    try {
      const k = this.trainer.stepCount;
      const W = this.slots.length;
      const tasks: TrainTask[][] = Array.from({ length: W }, () => []);
      const owner: number[][] = Array.from({ length: W }, () => []);
      for (let j = 0; j < microbatches.length; j++) {
        const mb = microbatches[j];
        const draws = this.split.draw(mb, new Rng(this.trainer.config.seed, microbatchStream(k, j)));
        const n = this.split.size(mb);
        if (n === 0) throw new Error(`DataParallelTrainer.step: microbatch ${j} is empty`);
        for (let w = 0; w < W; w++) {
          const [start, end] = sliceBounds(n, W, w);
          if (end === start) continue;
          const s = this.split.slice(mb, draws, start, end);
          tasks[w].push({ batch: s.batch, draws: s.draws, weight: (end - start) / n });
          owner[w].push(j);
        }
      }
      this.layout.readInto(this.trainer.params, this.weights);
      const active = tasks.map((t, w) => (t.length > 0 ? w : -1)).filter((w) => w >= 0);
      const replies = await Promise.all(active.map((w) => this.run(this.slots[w], tasks[w])));
      const total = this.layout.total;
      const slices: TaskMetrics[][] = microbatches.map(() => []);
      active.forEach((w, i) => {
        replies[i].forEach((m, t) => {
          slices[owner[w][t]].push(m);
        });
      });
      // The slots added in worker order by the backend's vectorised kernel (a JS loop over shared memory
      // took a few per cent of a step here).
      const flat = tf.tidy(() =>
        active
          .map((w) => tf.tensor1d(this.grads.subarray(w * total, (w + 1) * total)))
          .reduce((acc, g) => tf.add(acc, g)),
      ) as tf.Tensor1D;
      try {
        return this.trainer.applyGradient(flat, microbatches.length, slices.map(combineSlices));
      } finally {
        flat.dispose();
      }
    } finally {
      this.busy = false;
    }
  }

  /** Stops the workers and releases optimiser state and EMA (not the parameters). */
  async dispose(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.trainer.dispose();
    await Promise.all(
      this.slots.map(async (s) => {
        s.failed ??= new Error("DataParallelTrainer: disposed");
        await s.worker.terminate();
      }),
    );
  }
}
