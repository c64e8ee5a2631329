import { DataRng } from "./data-rng.js";
import { type Image, quantizeImageInPlace } from "./image.js";
import { PairDatasetWriter, type PairManifest } from "./pair-dataset.js";
import { formatShapesPrompt, type ShapesPrompt, type ShapesSplit, shapesPrompts } from "./shapes-grammar.js";
import { DEFAULT_DEGRADE, type DegradeConfig, renderDegraded } from "./shapes-render.js";

/** A reward function over (image, parsed prompt), e.g. `(x, p) => oracleReward(x, p).reward` from @idpo/metrics. */
export type RewardFn = (image: Image, prompt: ShapesPrompt) => number;

/** Configuration of an offline shapes-world preference dataset. */
export interface ShapesPairsConfig {
  /** Pairs to produce (near-ties are dropped and replaced, so exactly this many come out). */
  count: number;
  /** Image side S. */
  size: number;
  /** Seed of the whole stream. */
  seed: number;
  /** Reward used for labels and stored with each image (the oracle). */
  reward: RewardFn;
  /** Prompt set to draw from (default "train"). */
  split?: ShapesSplit | "all";
  /** Degradation magnitudes (default: docs/architecture.md). */
  degrade?: DegradeConfig;
  /** Bradley-Terry temperature: P(a wins) = σ((R_a − R_b)/temperature) (default 0.05). */
  temperature?: number;
  /** Pairs with |R_a − R_b| below this are dropped as near-ties (default 0.01). */
  minRewardGap?: number;
}

/** One generated pair. */
export interface ShapesPair {
  /** Prompt text. */
  prompt: string;
  /** Parsed prompt. */
  parsed: ShapesPrompt;
  /** The image the Bradley-Terry draw preferred (8-bit quantised, as stored). */
  winner: Image;
  /** The other image. */
  loser: Image;
  /** Reward of the winner (computed on the quantised image). */
  winnerReward: number;
  /** Reward of the loser. */
  loserReward: number;
  /** Degradation strength of the winner. */
  winnerStrength: number;
  /** Degradation strength of the loser. */
  loserStrength: number;
}

/** Counters kept while generating. */
export interface ShapesPairsStats {
  /** Pairs produced. */
  pairs: number;
  /** Candidate pairs dropped as near-ties. */
  droppedNearTies: number;
  /** Pairs whose winner has the lower reward (Bradley-Terry label noise). */
  upsets: number;
}

/**
 * Generates offline preference pairs (docs/architecture.md), deterministic from `seed`: prompts cycle through
 * the split in a freshly shuffled order each pass; each pair is two degraded renders of the prompt with
 * independent strengths u ~ U(0, 1); both images are quantised to 8 bits and scored; near-ties
 * (|ΔR| < minRewardGap) are dropped; the winner is drawn with P(a wins) = σ((R_a − R_b)/temperature).
 * `stats`, when given, is updated as pairs are produced.
 */
export function* generateShapesPairs(
  config: ShapesPairsConfig,
  stats?: ShapesPairsStats,
): Generator<ShapesPair> {
  checkConfig(config);
  const temperature = config.temperature ?? 0.05;
  const minGap = config.minRewardGap ?? 0.01;
  const degrade = config.degrade ?? DEFAULT_DEGRADE;
  const prompts = shapesPrompts(config.split ?? "train");
  if (prompts.length === 0) throw new Error("generateShapesPairs: the prompt split is empty");
  const rng = new DataRng(config.seed);
  const st = stats ?? { pairs: 0, droppedNearTies: 0, upsets: 0 };
  let order: ShapesPrompt[] = [];
  let next = 0;
  while (st.pairs < config.count) {
    if (next >= order.length) {
      order = rng.shuffle(prompts.slice());
      next = 0;
    }
    const parsed = order[next];
    const ua = rng.next();
    const a = quantizeImageInPlace(renderDegraded(parsed, config.size, ua, rng, degrade).image);
    const ub = rng.next();
    const b = quantizeImageInPlace(renderDegraded(parsed, config.size, ub, rng, degrade).image);
    const ra = config.reward(a, parsed);
    const rb = config.reward(b, parsed);
    if (!Number.isFinite(ra) || !Number.isFinite(rb)) {
      throw new Error(
        `generateShapesPairs: reward function returned ${ra}, ${rb} for "${formatShapesPrompt(parsed)}"`,
      );
    }
    if (Math.abs(ra - rb) < minGap) {
      st.droppedNearTies++;
      continue;
    }
    next++;
    const pa = 1 / (1 + Math.exp(-(ra - rb) / temperature));
    const aWins = rng.next() < pa;
    const prompt = formatShapesPrompt(parsed);
    const pair: ShapesPair = aWins
      ? {
          prompt,
          parsed,
          winner: a,
          loser: b,
          winnerReward: ra,
          loserReward: rb,
          winnerStrength: ua,
          loserStrength: ub,
        }
      : {
          prompt,
          parsed,
          winner: b,
          loser: a,
          winnerReward: rb,
          loserReward: ra,
          winnerStrength: ub,
          loserStrength: ua,
        };
    st.pairs++;
    if (pair.winnerReward < pair.loserReward) st.upsets++;
    yield pair;
  }
}

/** Progress callback: pairs written so far and the target. */
export type ProgressFn = (done: number, total: number) => void;

/**
 * Generates a shapes-world dataset straight into a pair dataset directory (streaming: one pair in
 * memory at a time). The manifest's info records the split, degradation, temperature, gap and counters.
 */
export async function writeShapesPairs(
  dir: string,
  config: ShapesPairsConfig,
  options: { overwrite?: boolean; shardSize?: number; onProgress?: ProgressFn } = {},
): Promise<{ manifest: PairManifest; stats: ShapesPairsStats }> {
  checkConfig(config);
  const stats: ShapesPairsStats = { pairs: 0, droppedNearTies: 0, upsets: 0 };
  const writer = await PairDatasetWriter.create(dir, {
    height: config.size,
    width: config.size,
    source: "shapes",
    seed: config.seed,
    overwrite: options.overwrite,
    shardSize: options.shardSize,
    info: {
      split: config.split ?? "train",
      degrade: { ...(config.degrade ?? DEFAULT_DEGRADE) },
      temperature: config.temperature ?? 0.05,
      minRewardGap: config.minRewardGap ?? 0.01,
    },
  });
  try {
    for (const p of generateShapesPairs(config, stats)) {
      await writer.write({
        prompt: p.prompt,
        winner: p.winner,
        loser: p.loser,
        winnerReward: p.winnerReward,
        loserReward: p.loserReward,
        meta: { uw: round4(p.winnerStrength), ul: round4(p.loserStrength) },
      });
      if (options.onProgress && (stats.pairs % 1000 === 0 || stats.pairs === config.count)) {
        options.onProgress(stats.pairs, config.count);
      }
    }
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const manifest = await writer.close({ ...stats });
  return { manifest, stats };
}

function checkConfig(c: ShapesPairsConfig): void {
  if (!Number.isInteger(c.count) || c.count < 0)
    throw new Error(`shapes pairs: count must be a non-negative integer, got ${c.count}`);
  if (!Number.isInteger(c.size) || c.size < 4)
    throw new Error(`shapes pairs: size must be an integer >= 4, got ${c.size}`);
  if (!Number.isFinite(c.seed)) throw new Error(`shapes pairs: seed must be a finite number, got ${c.seed}`);
  if (typeof c.reward !== "function")
    throw new Error("shapes pairs: reward must be a function (image, prompt) => number");
  if (c.temperature !== undefined && !(c.temperature > 0))
    throw new Error(`shapes pairs: temperature must be > 0, got ${c.temperature}`);
  if (c.minRewardGap !== undefined && !(c.minRewardGap >= 0))
    throw new Error(`shapes pairs: minRewardGap must be >= 0, got ${c.minRewardGap}`);
}

function round4(v: number): number {
  return Math.round(v * 1e4) / 1e4;
}
