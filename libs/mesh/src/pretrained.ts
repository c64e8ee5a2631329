import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { readCheckpointMetadata } from "@idpo/diffusion";
import { ModelKind, type RunConfig, RunMethod } from "@idpo/proto";
import type { CheckpointStore } from "./checkpoint-store.js";

/** One checkpoint shipped in the repository's `models/` folder (each with a MODEL_CARD.md beside it). */
export interface PretrainedCheckpoint {
  /** Checkpoint id under which it is seeded into the artifact store. */
  id: string;
  /** Policy or improver. */
  kind: ModelKind;
  /** Absolute path of its safetensors file. */
  path: string;
  /** One line saying what it is. */
  description: string;
}

const MODELS_DIR = fileURLToPath(new URL("../../../models/", import.meta.url));

/** Id of the shipped shapes16 base model (text-to-image policy). */
export const PRETRAINED_BASE_ID = "pretrained/shapes16-base";
/** Id of the shipped shapes16 improvement model, trained on the base's offline data. */
export const PRETRAINED_IMPROVER_ID = "pretrained/shapes16-improver";

/**
 * The offline dataset the shipped checkpoints were trained on (models/shapes16/MODEL_CARD.md): runs that
 * start from them and use offline data (SFT, offline DPO, the benchmark's baselines) use this one.
 */
export const PRETRAINED_DATASET = "shapes://?pairs=3000&size=16&seed=0";

/** The training seed of the shipped base's PRETRAIN job (its recipe in models/shapes16/MODEL_CARD.md). */
export const PRETRAINED_BASE_SEED = 1;

/** The checkpoints idpo ships, as diffusion tools start from a pretrained model. */
export const PRETRAINED: readonly PretrainedCheckpoint[] = [
  {
    id: PRETRAINED_BASE_ID,
    kind: ModelKind.POLICY,
    path: `${MODELS_DIR}shapes16/base.safetensors`,
    description: "shapes16 base model (16×16 shapes world), see models/shapes16/MODEL_CARD.md",
  },
  {
    id: PRETRAINED_IMPROVER_ID,
    kind: ModelKind.IMPROVER,
    path: `${MODELS_DIR}shapes16/improver.safetensors`,
    description: "shapes16 improvement model trained on the base's data, see models/shapes16/MODEL_CARD.md",
  },
];

/** Whether every shipped checkpoint file is present (a checkout without `models/` has none). */
export function pretrainedAvailable(): boolean {
  return PRETRAINED.every((p) => existsSync(p.path));
}

/**
 * Puts the shipped checkpoints into the artifact store under their ids, unless the same bytes are already
 * there, so runs can name them as base_checkpoint_id / improver_checkpoint_id. Returns the ids seeded.
 */
export async function seedPretrained(store: CheckpointStore): Promise<string[]> {
  const seeded: string[] = [];
  for (const p of PRETRAINED) {
    if (!existsSync(p.path)) continue;
    const bytes = readFileSync(p.path);
    // Validated as a checkpoint, under the same content hash the Trainer records for the ones it writes.
    const meta = readCheckpointMetadata(bytes);
    const sha256 = meta.contentHash.replace(/^sha256:/, "");
    const have = await store.ref(p.id);
    if (have?.sha256 === sha256) continue;
    await store.put({ id: p.id, kind: p.kind, step: meta.step, sha256 }, bytes);
    seeded.push(p.id);
  }
  return seeded;
}

/**
 * Makes a run start from the shipped checkpoints where it would otherwise train them from scratch on the
 * data they were trained for: a shapes-world dataset at 16 px, preset shapes16 (or unset), and no base
 * (improver) training settings of its own. The improver is used only with the shipped base, and only by
 * iterative-DPO runs. Returns which ids were filled in; `config` is changed in place.
 */
export function startFromPretrained(config: RunConfig): { base: boolean; improver: boolean } {
  const out = { base: false, improver: false };
  if (!pretrainedAvailable()) return out;
  const shapes16 =
    /^shapes:\/\/\?/.test(config.dataset) &&
    new URLSearchParams(config.dataset.slice(9)).get("size") === "16";
  const presetOk = config.modelPreset === "" || config.modelPreset === "shapes16";
  if (config.baseCheckpointId === "" && !config.baseTraining?.steps && shapes16 && presetOk) {
    config.baseCheckpointId = PRETRAINED_BASE_ID;
    out.base = true;
  }
  const iterative = config.method === RunMethod.UNSPECIFIED || config.method === RunMethod.ITERATIVE_DPO;
  if (
    iterative &&
    config.baseCheckpointId === PRETRAINED_BASE_ID &&
    config.improverCheckpointId === "" &&
    !config.improverTraining?.steps
  ) {
    config.improverCheckpointId = PRETRAINED_IMPROVER_ID;
    out.improver = true;
  }
  return out;
}
