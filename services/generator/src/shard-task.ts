import { decodePairShardTask, MalformedMessageError } from "@idpo/bus";
import { checkpointArtifact } from "@idpo/mesh";
import type { PairShardTask } from "@idpo/proto";

const MAX_PROMPTS = 65_536;

/**
 * Decodes a PairShardTask with the bus's structural checks, then the generator's own limits (sizes,
 * checkpoint ids, sampling ranges); anything wrong is a MalformedMessageError naming the field.
 */
export function decodeShardTask(data: Uint8Array): PairShardTask {
  return checkShardTask(decodePairShardTask(data));
}

/** The generator's limits on a structurally valid task. */
export function checkShardTask(t: PairShardTask): PairShardTask {
  const bad = (msg: string) =>
    new MalformedMessageError(`PairShardTask ${t.outputArtifact || "(no output_artifact)"}: ${msg}`);
  if (t.prompts.length > MAX_PROMPTS) throw bad(`prompts: ${t.prompts.length} is more than ${MAX_PROMPTS}`);
  for (let i = 0; i < t.seeds.length; i++) {
    if (t.seeds[i] > BigInt(Number.MAX_SAFE_INTEGER))
      throw bad(`seeds[${i}]: ${t.seeds[i]} exceeds ${Number.MAX_SAFE_INTEGER}`);
    if (t.prompts[i].length > 512)
      throw bad(`prompts[${i}]: ${t.prompts[i].length} characters is more than 512`);
  }
  for (const [field, id] of [
    ["policy_checkpoint_id", t.policyCheckpointId],
    ["improver_checkpoint_id", t.improverCheckpointId],
  ] as const) {
    if (id === "") continue;
    try {
      checkpointArtifact(id);
    } catch (e) {
      throw bad(`${field}: ${(e as Error).message}`);
    }
  }
  if (
    t.outputArtifact === "" ||
    t.outputArtifact.startsWith("/") ||
    t.outputArtifact.split("/").includes("..")
  ) {
    throw bad(`output_artifact ${JSON.stringify(t.outputArtifact)} must be a relative artifact name`);
  }
  if (t.steps > 1000) throw bad(`steps: ${t.steps} is more than 1000`);
  for (const [field, v] of [
    ["guidance_scale", t.guidanceScale],
    ["text_guidance_scale", t.textGuidanceScale],
    ["image_guidance_scale", t.imageGuidanceScale],
  ] as const) {
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 30))
      throw bad(`${field}: ${v} is outside [0, 30]`);
  }
  if (t.improveStrength !== undefined && !(t.improveStrength > 0 && t.improveStrength <= 1))
    throw bad(`improve_strength: ${t.improveStrength} is outside (0, 1]`);
  return t;
}

/** Event id of a shard's pairs_ready (the de-duplication key): `<run>/iter-<k>/pairs-ready/<i>`. */
export function pairsReadyEventId(t: Pick<PairShardTask, "runId" | "iteration" | "shardIndex">): string {
  return `${t.runId}/iter-${t.iteration}/pairs-ready/${t.shardIndex}`;
}
