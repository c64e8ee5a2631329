import { create, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { encodePng } from "@idpo/data";
import { decodePairShard } from "@idpo/mesh";
import {
  EvaluationSampleSchema,
  GenerateImagesResponseSchema,
  type GetEvaluationSamplesRequest,
  type GetEvaluationSamplesResponse,
  GetEvaluationSamplesResponseSchema,
  type GetIterationPairsRequest,
  type GetIterationPairsResponse,
  GetIterationPairsResponseSchema,
  ImagePairSchema,
  PairsReadySchema,
  type Run,
} from "@idpo/proto";
import { iterationPrefix, samplesArtifact, shardKeyPrefix } from "./run-plan.js";

/** Default and largest GetIterationPairs.max_pairs. */
const PAIRS_DEFAULT = 16;
const PAIRS_MAX = 256;
/** Default and largest GetEvaluationSamples.max_samples. */
const SAMPLES_DEFAULT = 16;
const SAMPLES_MAX = 1024;

function invalid(message: string): ConnectError {
  return new ConnectError(message, Code.InvalidArgument);
}

/** The run's iteration count K as validated at creation (every stored config has it filled in). */
function iterationCount(run: Run): number {
  return run.config?.iterations ?? 0;
}

function limit(value: number, field: string, fallback: number, max: number): number {
  if (value > max) throw invalid(`${field}: ${value} is more than ${max}`);
  return value === 0 ? fallback : value;
}

/** The shard index in a shard artifact's name (`…/shard-<i>.pairs`), or -1 for another name. */
function shardIndex(name: string): number {
  const m = /\/shard-(\d+)\.pairs$/.exec(name);
  return m ? Number(m[1]) : -1;
}

/**
 * GetIterationPairs: the first `max_pairs` online pairs of iteration k, read shard by shard (in shard
 * order) from the artifact store, as PNGs. `stored_pairs` sums the shards' pairs_ready records, so it counts
 * the pairs stored so far while the iteration is still generating.
 */
export async function iterationPairs(
  bus: Pick<Bus, "artifacts" | "state">,
  run: Run,
  req: GetIterationPairsRequest,
): Promise<GetIterationPairsResponse> {
  const max = limit(req.maxPairs, "max_pairs", PAIRS_DEFAULT, PAIRS_MAX);
  const k = req.iteration;
  if (k < 1 || k > iterationCount(run)) {
    throw invalid(`iteration: ${k} is not an iteration of run ${run.runId} (1 to ${iterationCount(run)})`);
  }
  const out = create(GetIterationPairsResponseSchema, {});
  for (const key of await bus.state.keys(shardKeyPrefix(run.runId, k))) {
    const entry = await bus.state.get(key);
    if (entry) out.storedPairs += fromBinary(PairsReadySchema, entry.value).pairCount;
  }
  const shards = (await bus.artifacts.list(iterationPrefix(run.runId, k)))
    .map((a) => ({ name: a.name, index: shardIndex(a.name) }))
    .filter((a) => a.index >= 0)
    .sort((a, b) => a.index - b.index);
  for (const shard of shards) {
    if (out.pairs.length >= max) break;
    const bytes = await bus.artifacts.get(shard.name);
    if (!bytes) continue;
    for (const rec of decodePairShard(bytes).records) {
      if (out.pairs.length >= max) break;
      out.pairs.push(
        create(ImagePairSchema, {
          prompt: rec.prompt,
          loser: { data: { case: "png", value: encodePng(rec.loser) } },
          winner: { data: { case: "png", value: encodePng(rec.winner) } },
        }),
      );
    }
  }
  return out;
}

/**
 * GetEvaluationSamples: the stored evaluation samples of the base model (iteration 0) or of iteration k's
 * checkpoint, with their prompts and seeds; empty until that evaluation has sampled.
 */
export async function evaluationSamples(
  bus: Pick<Bus, "artifacts">,
  run: Run,
  req: GetEvaluationSamplesRequest,
): Promise<GetEvaluationSamplesResponse> {
  const max = limit(req.maxSamples, "max_samples", SAMPLES_DEFAULT, SAMPLES_MAX);
  const k = req.iteration;
  if (k > iterationCount(run)) {
    throw invalid(
      `iteration: ${k} is not an iteration of run ${run.runId} (0 for the base model, 1 to ${iterationCount(run)})`,
    );
  }
  const out = create(GetEvaluationSamplesResponseSchema, {});
  const bytes = await bus.artifacts.get(samplesArtifact(run.runId, k));
  if (!bytes) return out;
  const stored = fromBinary(GenerateImagesResponseSchema, bytes);
  const prompts = run.config?.evalPrompts ?? [];
  out.checkpointId = stored.checkpoint?.id ?? "";
  for (const g of stored.images.slice(0, max)) {
    out.samples.push(
      create(EvaluationSampleSchema, { image: g.image, prompt: prompts[g.promptIndex] ?? "", seed: g.seed }),
    );
  }
  return out;
}
