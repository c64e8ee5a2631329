/**
 * Entry of a data-parallel training worker (started by DataParallelTrainer): rebuilds the models and
 * the objective on its own tfjs backend with one thread, then for every step reads the weights from
 * shared memory, computes the summed, weighted gradient of its slices and writes it to its slot.
 */
import { parentPort, workerData } from "node:worker_threads";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend/index.js";
import { WasmHeap } from "./backend/wasm-heap.js";
import { FlatLayout } from "./flat-params.js";
import { DiffusionModel } from "./model.js";
import type { Params } from "./params.js";
import { splitObjective } from "./split-objective.js";
import type {
  FromTrainWorker,
  TaskMetrics,
  ToTrainWorker,
  TrainTask,
  TrainWorkerInit,
  WorkerModel,
} from "./train-worker-protocol.js";

const port = parentPort;
if (!port) throw new Error("train-worker: must run in a worker thread");
const init = workerData as TrainWorkerInit;

function post(msg: FromTrainWorker): void {
  port!.postMessage(msg);
}

function buildModel(m: WorkerModel, trainable: boolean, values?: Float32Array): DiffusionModel {
  const params: Params = new Map();
  let off = 0;
  for (let i = 0; i < m.names.length; i++) {
    const size = m.shapes[i].reduce((a, b) => a * b, 1);
    const init = values ? tf.tensor(values.slice(off, off + size), m.shapes[i]) : tf.zeros(m.shapes[i]);
    params.set(m.names[i], tf.variable(init, trainable));
    init.dispose();
    off += size;
  }
  return new DiffusionModel(m.config, params);
}

async function main(): Promise<void> {
  const info = await initBackend({ backend: init.backend, threads: 1, log: () => {} });
  const model = buildModel(init.model, true);
  const reference = init.reference ? buildModel(init.reference, false, init.reference.values) : undefined;
  const objective = splitObjective(init.spec, model, reference);
  const layout = new FlatLayout(model.params);
  const vars = [...model.params.values()];
  const nameOf = new Map([...model.params].map(([name, v]) => [v.name, name]));
  const weights = new Float32Array(init.weights);
  const slot = new Float32Array(init.grads, init.slot * layout.total * 4, layout.total);

  // The wasm backend copies a new tensor's values onto its heap at once; the others may keep the array
  // they are given, and the parent rewrites shared memory every step, so they get a copy.
  const keepsArrays = WasmHeap.of() === undefined;
  const loadWeights = () => {
    for (let i = 0; i < layout.names.length; i++) {
      const off = layout.offsets[i];
      const end = off + layout.sizes[i];
      const t = tf.tensor(
        keepsArrays ? weights.slice(off, end) : weights.subarray(off, end),
        layout.shapes[i],
      );
      model.params.get(layout.names[i])!.assign(t);
      t.dispose();
    }
  };

  const run = (tasks: TrainTask[]): TaskMetrics[] => {
    loadWeights();
    const out: TaskMetrics[] = [];
    if (tasks.length === 0) slot.fill(0);
    for (const [k, task] of tasks.entries()) {
      let metrics: Record<string, tf.Scalar> = {};
      const { value, grads } = tf.variableGrads(() => {
        const loss = objective.loss(task.batch, task.draws);
        for (const m of Object.values(loss.metrics)) tf.keep(m);
        metrics = loss.metrics;
        return tf.mul(loss.loss, task.weight);
      }, vars);
      const values: Record<string, number> = {};
      for (const [name, m] of Object.entries(metrics)) values[name] = m.dataSync()[0];
      tf.dispose([...new Set([value, ...Object.values(metrics)])]);
      const named = new Map<string, tf.Tensor>();
      for (const [vn, g] of Object.entries(grads)) named.set(nameOf.get(vn)!, g);
      try {
        layout.scatterInto(named, slot, k > 0);
      } finally {
        tf.dispose(Object.values(grads));
      }
      out.push({ values, weights: objective.metricWeights(task.batch, task.draws, Object.keys(values)) });
    }
    return out;
  };

  port!.on("message", (msg: ToTrainWorker) => {
    try {
      if (msg.type !== "step") throw new Error(`train-worker: unknown message ${JSON.stringify(msg)}`);
      post({ type: "done", tasks: run(msg.tasks) });
    } catch (e) {
      post({ type: "error", message: (e as Error).message });
    }
  });
  post({ type: "ready", threads: info.threads });
}

main().catch((e) =>
  post({ type: "error", message: `train-worker failed to start: ${(e as Error).message}` }),
);
