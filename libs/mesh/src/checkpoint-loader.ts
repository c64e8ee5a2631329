import { Code, ConnectError } from "@connectrpc/connect";
import { type DiffusionModel, decodeCheckpoint, type ModelKind } from "@idpo/diffusion";
import type { CheckpointRef } from "@idpo/proto";
import { type CheckpointStore, checkpointArtifact } from "./checkpoint-store.js";
import type { LoadedModel } from "./model-slot.js";

function checkId(id: string): void {
  if (id === "") throw new ConnectError("checkpoint_id: required", Code.InvalidArgument);
  try {
    checkpointArtifact(id);
  } catch (e) {
    throw new ConnectError(`checkpoint_id: ${(e as Error).message}`, Code.InvalidArgument);
  }
}

function notFound(id: string): ConnectError {
  return new ConnectError(
    `checkpoint_id: checkpoint ${JSON.stringify(id)} is not in the artifact store`,
    Code.NotFound,
  );
}

/**
 * Checkpoint `id`'s reference (its metadata only, without reading the file). Errors are ConnectErrors
 * naming the field: INVALID_ARGUMENT for a missing or malformed id, NOT_FOUND for a checkpoint the store
 * does not hold.
 */
export async function checkpointRef(store: CheckpointStore, id: string): Promise<CheckpointRef> {
  checkId(id);
  const ref = await store.ref(id);
  if (!ref) throw notFound(id);
  return ref;
}

/** Reads checkpoint `id`'s bytes and reference from the store; errors as checkpointRef. */
export async function fetchCheckpoint(
  store: CheckpointStore,
  id: string,
): Promise<{ ref: CheckpointRef; bytes: Uint8Array }> {
  checkId(id);
  const got = await store.get(id);
  if (!got) throw notFound(id);
  return got;
}

/** DATA_LOSS for a checkpoint file that does not decode. */
export function unreadableCheckpoint(id: string, err: unknown): ConnectError {
  return new ConnectError(
    `checkpoint ${JSON.stringify(id)} is unreadable: ${(err as Error).message}`,
    Code.DataLoss,
  );
}

/** INVALID_ARGUMENT for a checkpoint of the other model kind. */
export function wrongModelKind(id: string, got: ModelKind, want: ModelKind): ConnectError {
  return new ConnectError(
    `checkpoint_id: ${JSON.stringify(id)} holds a ${got} model; this service loads ${want} models`,
    Code.InvalidArgument,
  );
}

/**
 * Reads checkpoint `id` from the store and rebuilds its tfjs model (frozen weights), checking that it is
 * a `kind` model. Errors as fetchCheckpoint, plus DATA_LOSS for an unreadable file and INVALID_ARGUMENT
 * for the wrong kind.
 */
export async function loadDiffusionCheckpoint(
  store: CheckpointStore,
  id: string,
  kind: ModelKind,
): Promise<LoadedModel<DiffusionModel>> {
  const got = await fetchCheckpoint(store, id);
  let model: DiffusionModel;
  try {
    model = decodeCheckpoint(got.bytes, { trainable: false }).model;
  } catch (e) {
    throw unreadableCheckpoint(id, e);
  }
  if (model.kind !== kind) {
    model.dispose();
    throw wrongModelKind(id, model.kind, kind);
  }
  return { model, ref: got.ref };
}
