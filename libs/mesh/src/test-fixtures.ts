/**
 * Test fixtures of @idpo/mesh, for the services' tests: a temporary bus, tiny policy and improver
 * checkpoints, a memory logger and the test backend. Imported as "@idpo/mesh/test-fixtures"; not part of
 * the package's public API (`src/index.ts`).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Bus, openBus } from "@idpo/bus";
import {
  createModel,
  type DiffusionModel,
  encodeCheckpoint,
  improverFromPolicy,
  initBackend,
  preset,
  Rng,
  readCheckpointMetadata,
} from "@idpo/diffusion";
import { type CheckpointRef, ModelKind } from "@idpo/proto";
import { createLogger, type Logger } from "@idpo/runtime";
import * as tf from "@tensorflow/tfjs-core";
import type { CheckpointStore } from "./checkpoint-store.js";

/** Tests run on single-threaded wasm: much faster than cpu for these sizes, and deterministic. */
export async function useTestBackend(): Promise<void> {
  await initBackend({ backend: "wasm", threads: 1, log: () => {} });
}

/** A logger that keeps its lines in memory (and prints nothing). */
export function memoryLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return Object.assign(
    createLogger("debug", {}, (l) => lines.push(l)),
    { lines },
  );
}

/** A fresh embedded bus in a temp directory named after `service`, with short timings. */
export async function tempBus(service = "mesh"): Promise<{ bus: Bus; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), `idpo-${service}-test-`));
  const bus = await openBus({
    backend: "embedded",
    dataDir: dir,
    limits: { workAckWaitMs: 5_000, workMaxDeliver: 2, eventsMaxDeliver: 2, backoffMs: [50] },
  });
  return { bus, dir };
}

/**
 * Gives every zero-initialised weight (output convs, attention output projections, biases) random
 * values, as training would: a fresh model predicts ε = 0 everywhere, so all its samples would be the
 * same function of the seed, whatever the weights, prompt or condition image.
 */
function untrained(model: DiffusionModel, seed: number): DiffusionModel {
  const rng = new Rng(seed, 7);
  for (const [name, v] of model.params) {
    const cur = v.dataSync() as Float32Array;
    // The improver's condition-image kernels are the zero half of conv_in.
    if (!cur.every((x) => x === 0) && name !== "unet.conv_in.w") continue;
    const next = rng.normals(cur.length);
    for (let i = 0; i < cur.length; i++) next[i] = cur[i] + 0.1 * next[i];
    const t = tf.tensor(next, v.shape);
    v.assign(t);
    t.dispose();
  }
  return model;
}

/** A tiny text-to-image policy whose output depends on its weights and prompt. */
export function tinyPolicy(seed: number): DiffusionModel {
  return untrained(createModel(preset("tiny"), seed, { trainable: false }), seed);
}

/** A tiny improver whose output depends on its weights, prompt and condition image. */
export function tinyImprover(seed: number): DiffusionModel {
  const policy = createModel(preset("tiny"), seed, { trainable: false });
  const improver = improverFromPolicy(policy, { trainable: false });
  policy.dispose();
  return untrained(improver, seed);
}

/** Stores `model` as checkpoint `id` and returns its reference. */
export async function putCheckpoint(
  store: CheckpointStore,
  id: string,
  model: DiffusionModel,
): Promise<CheckpointRef> {
  const bytes = encodeCheckpoint(model, { step: 0 });
  const sha = readCheckpointMetadata(bytes).contentHash.replace(/^sha256:/, "");
  return store.put(
    { id, kind: model.kind === "improver" ? ModelKind.IMPROVER : ModelKind.POLICY, step: 0, sha256: sha },
    bytes,
  );
}
