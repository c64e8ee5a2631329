/** The artifact metadata of a stored pair shard: what a generator writes and a controller checks. */

/** `format` of a pair shard artifact written by a generator. */
export const PAIR_SHARD_FORMAT = "idpo-pair-shard/1";

/** What a stored pair shard says about itself. */
export interface PairShardMeta {
  runId: string;
  iteration: number;
  shardIndex: number;
  pairCount: number;
  /** Policy checkpoint that sampled the losers. */
  policyCheckpointId: string;
  /** Improver checkpoint that made the winners. */
  improverCheckpointId: string;
  /** Mean RGB distance between winners and losers. */
  meanPairDistance: number;
}

/** The artifact metadata (string map) of a pair shard. */
export function pairShardMeta(m: PairShardMeta): Record<string, string> {
  return {
    format: PAIR_SHARD_FORMAT,
    pair_count: String(m.pairCount),
    run_id: m.runId,
    iteration: String(m.iteration),
    shard_index: String(m.shardIndex),
    policy_checkpoint_id: m.policyCheckpointId,
    improver_checkpoint_id: m.improverCheckpointId,
    mean_pair_distance: String(m.meanPairDistance),
  };
}

/**
 * Reads a pair shard's artifact metadata; undefined when it is not a pair shard written by a generator
 * (another format, or a count or index that is not a non-negative integer). Fields an older generator did
 * not write read as "" (ids) or 0.
 */
export function readPairShardMeta(meta: Record<string, string> | undefined): PairShardMeta | undefined {
  if (meta?.format !== PAIR_SHARD_FORMAT) return undefined;
  const int = (k: string) => {
    const v = Number(meta[k] ?? Number.NaN);
    return Number.isInteger(v) && v >= 0 ? v : undefined;
  };
  const pairCount = int("pair_count");
  if (pairCount === undefined) return undefined;
  return {
    runId: meta.run_id ?? "",
    iteration: int("iteration") ?? 0,
    shardIndex: int("shard_index") ?? 0,
    pairCount,
    policyCheckpointId: meta.policy_checkpoint_id ?? "",
    improverCheckpointId: meta.improver_checkpoint_id ?? "",
    meanPairDistance: Number(meta.mean_pair_distance ?? 0),
  };
}
