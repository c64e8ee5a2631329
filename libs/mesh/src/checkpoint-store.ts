import { create } from "@bufbuild/protobuf";
import type { ArtifactStore } from "@idpo/bus";
import { type CheckpointRef, CheckpointRefSchema, ModelKind } from "@idpo/proto";

/** Checkpoint ids: path-like, e.g. "runs/r1/iter-2/policy" or "jobs/j7@step-100". */
const ID_PATTERN = /^[A-Za-z0-9._@/-]{1,200}$/;

/** Artifact name of checkpoint `id`. */
export function checkpointArtifact(id: string): string {
  if (!ID_PATTERN.test(id)) {
    throw new Error(`invalid checkpoint id ${JSON.stringify(id)}: expected 1 to 200 of [A-Za-z0-9._@/-]`);
  }
  if (id.includes("..")) {
    throw new Error(`invalid checkpoint id ${JSON.stringify(id)}: ".." is not allowed (ids are not paths)`);
  }
  return `checkpoints/${id}.safetensors`;
}

/** Stores safetensors checkpoint files in the artifact store, with their reference in the object's metadata. */
export class CheckpointStore {
  constructor(private readonly artifacts: ArtifactStore) {}

  /** Stores `bytes` as checkpoint `ref.id` (replacing any previous one) and returns the full reference. */
  async put(
    ref: { id: string; kind: ModelKind; step: number; parentId?: string; sha256: string },
    bytes: Uint8Array,
  ): Promise<CheckpointRef> {
    const artifact = checkpointArtifact(ref.id);
    await this.artifacts.put(artifact, bytes, {
      meta: {
        id: ref.id,
        kind: ModelKind[ref.kind],
        step: String(ref.step),
        parent_id: ref.parentId ?? "",
        sha256: ref.sha256,
      },
    });
    return create(CheckpointRefSchema, {
      id: ref.id,
      artifact,
      kind: ref.kind,
      step: BigInt(ref.step),
      parentId: ref.parentId ?? "",
      sha256: ref.sha256,
    });
  }

  /** The reference of checkpoint `id`, or undefined if it is not stored. */
  async ref(id: string): Promise<CheckpointRef | undefined> {
    const info = await this.artifacts.info(checkpointArtifact(id));
    if (!info) return undefined;
    const meta = info.meta ?? {};
    return create(CheckpointRefSchema, {
      id,
      artifact: info.name,
      kind:
        ModelKind[(meta.kind ?? "MODEL_KIND_UNSPECIFIED") as keyof typeof ModelKind] ?? ModelKind.UNSPECIFIED,
      step: BigInt(meta.step ?? "0"),
      parentId: meta.parent_id ?? "",
      sha256: meta.sha256 ?? "",
    });
  }

  /** The checkpoint's bytes and reference, or undefined if it is not stored. */
  async get(id: string): Promise<{ ref: CheckpointRef; bytes: Uint8Array } | undefined> {
    const ref = await this.ref(id);
    if (!ref) return undefined;
    const bytes = await this.artifacts.get(ref.artifact);
    if (!bytes) return undefined;
    return { ref, bytes };
  }
}
