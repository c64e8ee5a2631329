import type { ArtifactStore } from "@idpo/bus";
import {
  decodeSafetensors,
  encodeSafetensors,
  type Params,
  type SafetensorsFile,
  type SafetensorsTensor,
  type TrainingDriver,
} from "@idpo/diffusion";
import { checkpointArtifact } from "@idpo/mesh";
import * as tf from "@tensorflow/tfjs-core";

/** Value of the `format` metadata key of a training-state artifact. */
export const TRAINING_STATE_FORMAT = "idpo-trainer-state/1";

/**
 * Artifact name of the training state saved beside intermediate checkpoint `checkpointId`:
 * `trainer-state/<checkpoint id>.safetensors`.
 */
export function trainingStateArtifact(checkpointId: string): string {
  // Same id rules as checkpoints (validated by checkpointArtifact).
  return checkpointArtifact(checkpointId).replace(/^checkpoints\//, "trainer-state/");
}

function hostTensor(t: tf.Tensor): SafetensorsTensor {
  return { shape: [...t.shape], data: new Float32Array(t.dataSync() as Float32Array) };
}

/**
 * Serialises what is needed to continue training exactly: the raw (non-EMA) weights (`param/<name>`),
 * AdamW's flat moments (`adam/m`, `adam/v`) and update count, and, when an EMA is kept, its flat average
 * (`ema/average`) and update count.
 */
export function encodeTrainingState(
  trainer: TrainingDriver<unknown>,
  info: { jobId: string; step: number },
): Uint8Array {
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, v] of trainer.params) tensors.set(`param/${name}`, hostTensor(v));
  const adam = trainer.optimizer.state();
  tensors.set("adam/m", hostTensor(adam.m));
  tensors.set("adam/v", hostTensor(adam.v));
  if (trainer.ema) tensors.set("ema/average", hostTensor(trainer.ema.state().average));
  return encodeSafetensors(tensors, {
    format: TRAINING_STATE_FORMAT,
    job_id: info.jobId,
    step: String(info.step),
    adam_iterations: String(adam.iterations),
    ema: trainer.ema ? "1" : "0",
    ema_updates: String(trainer.ema?.state().count ?? 0),
  });
}

/** A decoded training state, to be applied to a Trainer built like the one that saved it. */
export class TrainingState {
  /** Optimiser steps the state was saved at. */
  readonly step: number;
  private readonly file: SafetensorsFile;

  constructor(bytes: Uint8Array, jobId: string) {
    this.file = decodeSafetensors(bytes);
    const m = this.file.metadata;
    if (m.format !== TRAINING_STATE_FORMAT) {
      throw new Error(
        `training state: format ${JSON.stringify(m.format)}, expected ${TRAINING_STATE_FORMAT}`,
      );
    }
    if (m.job_id !== jobId) throw new Error(`training state belongs to job ${m.job_id}, not ${jobId}`);
    this.step = Number(m.step);
    if (!Number.isInteger(this.step) || this.step < 0) throw new Error(`training state: bad step ${m.step}`);
  }

  /** Whether the saved job kept an EMA. */
  get hasEma(): boolean {
    return this.file.metadata.ema === "1";
  }

  private tensor(name: string, shape: readonly number[]): tf.Tensor {
    const t = this.file.tensors.get(name);
    if (!t) throw new Error(`training state: missing tensor ${name}`);
    const size = shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== size) {
      throw new Error(`training state: ${name} has ${t.data.length} values, the model needs [${shape}]`);
    }
    return tf.tensor(t.data, [...shape], "float32");
  }

  private assign(params: Params, prefix: string): void {
    for (const [name, v] of params) {
      const t = this.tensor(`${prefix}${name}`, v.shape);
      v.assign(t);
      t.dispose();
    }
  }

  /** Restores the raw weights, the optimiser's and the EMA's state, and the step counter. */
  apply(trainer: TrainingDriver<unknown>): void {
    if (this.hasEma !== (trainer.ema !== undefined)) {
      throw new Error(
        `training state: EMA ${this.hasEma ? "kept" : "not kept"}, but the job ${trainer.ema ? "keeps" : "keeps no"} EMA`,
      );
    }
    this.assign(trainer.params, "param/");
    const adam = trainer.optimizer.state();
    const m = this.tensor("adam/m", adam.m.shape);
    const v = this.tensor("adam/v", adam.v.shape);
    try {
      trainer.optimizer.loadState(Number(this.file.metadata.adam_iterations), m, v);
    } finally {
      tf.dispose([m, v]);
    }
    if (trainer.ema) {
      const avg = this.tensor("ema/average", trainer.ema.state().average.shape);
      try {
        trainer.ema.loadState(Number(this.file.metadata.ema_updates), avg);
      } finally {
        avg.dispose();
      }
    }
    trainer.setStepCount(this.step);
  }
}

/** Stores a training state artifact beside checkpoint `checkpointId`. */
export async function saveTrainingState(
  artifacts: ArtifactStore,
  checkpointId: string,
  bytes: Uint8Array,
): Promise<void> {
  await artifacts.put(trainingStateArtifact(checkpointId), bytes, {
    meta: { checkpoint_id: checkpointId, format: TRAINING_STATE_FORMAT },
  });
}
