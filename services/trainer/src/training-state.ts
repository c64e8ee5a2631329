import type { ArtifactStore } from "@idpo/bus";
import { decodeSafetensors, encodeSafetensors, type SafetensorsTensor, type Trainer } from "@idpo/diffusion";
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
 * Serialises everything needed to continue training bit-for-bit: the raw (non-EMA) weights
 * (`param/<name>`), AdamW's moments (`adam/<name>.m|v`) and update count, and the EMA weights
 * (`ema/<name>`) when an EMA is kept.
 */
export function encodeTrainingState(
  trainer: Trainer<unknown>,
  info: { jobId: string; step: number },
): Uint8Array {
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, v] of trainer.params) tensors.set(`param/${name}`, hostTensor(v));
  const adam = trainer.optimizer.state();
  for (const [name, t] of adam.tensors) tensors.set(`adam/${name}`, hostTensor(t));
  if (trainer.ema) for (const [name, s] of trainer.ema.shadow) tensors.set(`ema/${name}`, hostTensor(s));
  return encodeSafetensors(tensors, {
    format: TRAINING_STATE_FORMAT,
    job_id: info.jobId,
    step: String(info.step),
    adam_iterations: String(adam.iterations),
    ema: trainer.ema ? "1" : "0",
  });
}

/**
 * Restores a state written by {@link encodeTrainingState} into a trainer built the same way (same
 * parameters, same EMA setting) and sets its step counter. Returns the step. Fails loudly on any
 * mismatch (missing tensor, wrong shape, EMA setting, job).
 */
export function restoreTrainingState(trainer: Trainer<unknown>, bytes: Uint8Array, jobId: string): number {
  const file = decodeSafetensors(bytes);
  const m = file.metadata;
  if (m.format !== TRAINING_STATE_FORMAT) {
    throw new Error(`training state: format ${JSON.stringify(m.format)}, expected ${TRAINING_STATE_FORMAT}`);
  }
  if (m.job_id !== jobId) throw new Error(`training state belongs to job ${m.job_id}, not ${jobId}`);
  const step = Number(m.step);
  const iterations = Number(m.adam_iterations);
  if (!Number.isInteger(step) || step < 0) throw new Error(`training state: bad step ${m.step}`);
  if ((m.ema === "1") !== (trainer.ema !== undefined)) {
    throw new Error(
      `training state: EMA ${m.ema === "1" ? "kept" : "not kept"}, but the job ${trainer.ema ? "keeps" : "keeps no"} EMA`,
    );
  }
  const take = (name: string, like: tf.Tensor): tf.Tensor => {
    const t = file.tensors.get(name);
    if (!t) throw new Error(`training state: missing tensor ${name}`);
    if (t.shape.join(",") !== like.shape.join(",")) {
      throw new Error(`training state: ${name} has shape [${t.shape}], the model has [${like.shape}]`);
    }
    return tf.tensor(t.data, t.shape, "float32");
  };
  const owned: tf.Tensor[] = [];
  try {
    for (const [name, v] of trainer.params) {
      const t = take(`param/${name}`, v);
      owned.push(t);
      v.assign(t);
    }
    const adamTensors = new Map<string, tf.Tensor>();
    for (const [name, like] of trainer.optimizer.state().tensors) {
      const t = take(`adam/${name}`, like);
      owned.push(t);
      adamTensors.set(name, t);
    }
    trainer.optimizer.loadState(iterations, adamTensors);
    if (trainer.ema) {
      for (const [name, s] of trainer.ema.shadow) {
        const t = take(`ema/${name}`, s);
        owned.push(t);
        s.assign(t);
      }
    }
  } finally {
    tf.dispose(owned);
  }
  trainer.setStepCount(step);
  return step;
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
