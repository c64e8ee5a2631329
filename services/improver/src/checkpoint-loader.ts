import { Code, ConnectError } from "@connectrpc/connect";
import { type DiffusionModel, decodeCheckpoint, type ModelKind } from "@idpo/diffusion";
import { type CheckpointStore, checkpointArtifact, type LoadedModel } from "@idpo/mesh";

/**
 * Reads checkpoint `id` from the store and rebuilds its model (frozen weights), checking that it is a
 * `kind` model. Errors are ConnectErrors naming the field: INVALID_ARGUMENT for a bad id or the wrong
 * kind, NOT_FOUND for a missing checkpoint, DATA_LOSS for an unreadable file.
 */
export async function loadDiffusionCheckpoint(
  store: CheckpointStore,
  id: string,
  kind: ModelKind,
): Promise<LoadedModel<DiffusionModel>> {
  if (id === "") throw new ConnectError("checkpoint_id: required", Code.InvalidArgument);
  try {
    checkpointArtifact(id);
  } catch (e) {
    throw new ConnectError(`checkpoint_id: ${(e as Error).message}`, Code.InvalidArgument);
  }
  const got = await store.get(id);
  if (!got)
    throw new ConnectError(
      `checkpoint_id: checkpoint ${JSON.stringify(id)} is not in the artifact store`,
      Code.NotFound,
    );
  let model: DiffusionModel;
  try {
    model = decodeCheckpoint(got.bytes, { trainable: false }).model;
  } catch (e) {
    throw new ConnectError(
      `checkpoint ${JSON.stringify(id)} is unreadable: ${(e as Error).message}`,
      Code.DataLoss,
    );
  }
  if (model.kind !== kind) {
    model.dispose();
    throw new ConnectError(
      `checkpoint_id: ${JSON.stringify(id)} holds a ${model.kind} model; this service loads ${kind} models`,
      Code.InvalidArgument,
    );
  }
  return { model, ref: got.ref };
}
