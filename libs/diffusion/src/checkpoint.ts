import { createHash } from "node:crypto";
import * as tf from "@tensorflow/tfjs-core";
import { type DiffusionConfig, DiffusionModel, type ModelKind, paramShapes } from "./model.js";
import type { Params } from "./params.js";
import { decodeSafetensors, encodeSafetensors, type SafetensorsTensor } from "./safetensors.js";

/** Value of the `idpo_format` metadata key of every checkpoint this library writes. */
export const CHECKPOINT_FORMAT = "idpo-diffusion/1";

/** Lineage and bookkeeping stored in a checkpoint's `__metadata__`. */
export interface CheckpointMetadata {
  /** Always CHECKPOINT_FORMAT. */
  format: string;
  /** "policy" or "improver" (from the config). */
  kind: ModelKind;
  /** Optimiser steps the weights have seen (in the job that wrote them). */
  step: number;
  /** Content hash of the parent checkpoint (the weights training started from); null for a fresh init. */
  parent: string | null;
  /** "sha256:<hex>" of the tensor data section: the checkpoint's id. */
  contentHash: string;
  /** The architecture, from which the weights' names and shapes follow. */
  config: DiffusionConfig;
  /** Further string entries given at encode time (e.g. job id, EMA flag). */
  extra: Record<string, string>;
}

/** What the caller supplies when writing a checkpoint. */
export interface CheckpointInfo {
  /** Optimiser steps the weights have seen. */
  step: number;
  /** Content hash of the parent checkpoint, or null/undefined for none. */
  parent?: string | null;
  /** Extra string metadata (keys must not clash with the reserved ones). */
  extra?: Record<string, string>;
}

const RESERVED = new Set(["idpo_format", "kind", "step", "parent", "content_hash", "config"]);

/** sha256 of the tensor data, as "sha256:<hex>". */
export function contentHash(dataSection: Uint8Array): string {
  return `sha256:${createHash("sha256").update(dataSection).digest("hex")}`;
}

/** Serialises a model's weights and config to safetensors bytes. */
export function encodeCheckpoint(model: DiffusionModel, info: CheckpointInfo): Uint8Array {
  if (!Number.isInteger(info.step) || info.step < 0)
    throw new Error(`encodeCheckpoint: step must be a non-negative integer, got ${info.step}`);
  const tensors = new Map<string, SafetensorsTensor>();
  for (const [name, v] of model.params)
    tensors.set(name, { shape: [...v.shape], data: v.dataSync() as Float32Array });
  const hash = createHash("sha256");
  for (const t of tensors.values())
    hash.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  const metadata: Record<string, string> = {
    idpo_format: CHECKPOINT_FORMAT,
    kind: model.kind,
    step: String(info.step),
    parent: info.parent ?? "",
    content_hash: `sha256:${hash.digest("hex")}`,
    config: JSON.stringify(model.config),
  };
  for (const [k, v] of Object.entries(info.extra ?? {})) {
    if (RESERVED.has(k)) throw new Error(`encodeCheckpoint: extra metadata key ${k} is reserved`);
    if (typeof v !== "string") throw new Error(`encodeCheckpoint: extra metadata ${k} must be a string`);
    metadata[k] = v;
  }
  return encodeSafetensors(tensors, metadata);
}

/** Reads and validates a checkpoint's metadata without building the model. */
export function readCheckpointMetadata(bytes: Uint8Array): CheckpointMetadata {
  return parseMetadata(decodeSafetensors(bytes).metadata);
}

function parseMetadata(m: Record<string, string>): CheckpointMetadata {
  if (m.idpo_format !== CHECKPOINT_FORMAT) {
    throw new Error(
      `checkpoint: idpo_format is ${JSON.stringify(m.idpo_format)}, expected ${CHECKPOINT_FORMAT}`,
    );
  }
  let config: DiffusionConfig;
  try {
    config = JSON.parse(m.config ?? "");
  } catch {
    throw new Error("checkpoint: metadata 'config' is not valid JSON");
  }
  const step = Number(m.step);
  if (!Number.isInteger(step) || step < 0)
    throw new Error(`checkpoint: metadata step ${JSON.stringify(m.step)} is invalid`);
  if (m.kind !== "policy" && m.kind !== "improver")
    throw new Error(`checkpoint: metadata kind ${JSON.stringify(m.kind)} is invalid`);
  if (!/^sha256:[0-9a-f]{64}$/.test(m.content_hash ?? ""))
    throw new Error("checkpoint: metadata content_hash is missing or malformed");
  const extra: Record<string, string> = {};
  for (const [k, v] of Object.entries(m)) if (!RESERVED.has(k)) extra[k] = v;
  return {
    format: m.idpo_format,
    kind: m.kind,
    step,
    parent: m.parent ? m.parent : null,
    contentHash: m.content_hash,
    config,
    extra,
  };
}

/** A decoded checkpoint. */
export interface LoadedCheckpoint {
  model: DiffusionModel;
  metadata: CheckpointMetadata;
}

/** A checkpoint's validated weights on the host, for engines other than tfjs. */
export interface CheckpointWeights {
  /** Weight name → shape and values, in the config's parameter order. */
  weights: Map<string, SafetensorsTensor>;
  metadata: CheckpointMetadata;
}

/**
 * Reads checkpoint bytes into validated host arrays. Fails loudly when the content hash does not match
 * the data, when a weight the config implies is missing or extra, or when any weight's shape differs
 * from the config's.
 */
export function decodeCheckpointWeights(bytes: Uint8Array): CheckpointWeights {
  const file = decodeSafetensors(bytes);
  const metadata = parseMetadata(file.metadata);
  const actual = contentHash(file.dataSection);
  if (actual !== metadata.contentHash) {
    throw new Error(
      `checkpoint: content hash mismatch (metadata ${metadata.contentHash}, data ${actual}); the file is corrupt`,
    );
  }
  const expected = paramShapes(metadata.config);
  const kindFromConfig: ModelKind = metadata.config.unet.condChannels > 0 ? "improver" : "policy";
  if (kindFromConfig !== metadata.kind)
    throw new Error(`checkpoint: kind ${metadata.kind} contradicts the config (${kindFromConfig})`);
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const t = file.tensors.get(name);
    if (!t) problems.push(`missing tensor ${name} [${shape}]`);
    else if (t.shape.join(",") !== shape.join(","))
      problems.push(`tensor ${name} has shape [${t.shape}], the config implies [${shape}]`);
  }
  for (const name of file.tensors.keys()) if (!expected.has(name)) problems.push(`unexpected tensor ${name}`);
  if (problems.length > 0) {
    const shown = problems.slice(0, 10).join("; ");
    throw new Error(
      `checkpoint does not match its config: ${shown}${problems.length > 10 ? ` (+${problems.length - 10} more)` : ""}`,
    );
  }
  const weights = new Map<string, SafetensorsTensor>();
  for (const name of expected.keys()) weights.set(name, file.tensors.get(name)!);
  return { weights, metadata };
}

/** Rebuilds a model from checkpoint bytes, validated as decodeCheckpointWeights does. */
export function decodeCheckpoint(bytes: Uint8Array, opts: { trainable?: boolean } = {}): LoadedCheckpoint {
  const { weights, metadata } = decodeCheckpointWeights(bytes);
  const params: Params = new Map();
  for (const [name, t] of weights) {
    const init = tf.tensor(t.data, t.shape, "float32");
    params.set(name, tf.variable(init, opts.trainable ?? true));
    init.dispose();
  }
  return { model: new DiffusionModel(metadata.config, params), metadata };
}
