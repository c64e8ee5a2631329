import { meanCI, winRate } from "@idpo/metrics";

/** The evaluation of one model on one prompt set (every model: the same prompts and seeds, in the same order). */
export interface SetEval {
  /** Images scored. */
  n: number;
  /** Mean oracle reward. */
  reward: number;
  /** Half-width of its 95 % Student-t confidence interval over images. */
  ci: number;
  /** Vendi score per prompt, averaged over prompts (the Scorer's Evaluate). */
  vendi: number;
  /** Win-rate against the base model's images of the same prompt and seed (ties half); absent for the base. */
  winRate?: number;
  /** Half-width of the win-rate's 95 % interval. */
  winRateCi?: number;
  /** Mean of each oracle component. */
  components: Record<string, number>;
  /** Per-image rewards, prompt-major (kept for paired comparisons and the seed-noise estimate). */
  rewards: number[];
}

/** One evaluated model. */
export interface ModelEval {
  /** Stable key, e.g. "spin/iter-3". */
  key: string;
  /** Human-readable row label. */
  label: string;
  /** Checkpoint evaluated ("" for derived sets such as the improver applied to base samples). */
  checkpointId: string;
  /** On the evaluated training prompts. */
  train: SetEval;
  /** On the held-out test prompts. */
  test: SetEval;
}

/** Final training metrics of a job (Diffusion-DPO's reference names: loss, raw_model_loss, ref_loss, implicit_acc). */
export type TrainMetrics = Record<string, number>;

/** A method's iterates, for the reward-per-iteration plot and table. */
export interface IterationSeries {
  /** Series name, e.g. "SPIN". */
  label: string;
  /** Keys of ModelEvals in order; the first is the starting model (iteration 0). */
  keys: string[];
  /** Iteration number of keys[0] (0 from the base; 3 for ours started from SPIN's iteration 3). */
  firstIteration: number;
}

/** One row of Table 2: "ours" from the base with a given number of online pairs per iteration. */
export interface PairSizeRow {
  /** Online pairs per iteration. */
  pairs: number;
  /** Keys of its iterates 1..K. */
  keys: string[];
}

/** The result of one variant of the iterative method, measured on the validation prompts. */
export interface VariantResult {
  /** Stable key, e.g. "beta-250". */
  key: string;
  /** Short name. */
  label: string;
  /** What the variant changes relative to the faithful method. */
  change: string;
  /** Validation reward of the start (index 0) and of each iteration's chosen checkpoint. */
  validation: number[];
  /** Their 95 % half-widths. */
  validationCi: number[];
  /** Validation Vendi per iteration (same indexing). */
  validationVendi: number[];
  /** Final training metrics of each iteration's DPO job. */
  trainMetrics: TrainMetrics[];
  /** Checkpoint of each iteration (the early-stopping variant's chosen ones). */
  checkpoints: string[];
  /**
   * Key into `models` of the last checkpoint's evaluation on the train and test sets (reported beside the
   * validation figures; the choice never reads it).
   */
  modelKey?: string;
}

/** Everything the report is written from. */
export interface PaperResults {
  /** Every evaluated model by key. */
  models: Record<string, ModelEval>;
  /** Rows of Tables 1 and 4, in order (keys into models). */
  mainRows: string[];
  /** Reward-per-iteration series. */
  series: IterationSeries[];
  /** Table 2 rows, increasing pairs. */
  pairSizes: PairSizeRow[];
  /** Final training metrics by job label (e.g. "SPIN iter 2"). */
  trainMetrics: Record<string, TrainMetrics>;
  /**
   * The base model's learning curve, when it was trained here: validation reward of its intermediate
   * checkpoints and its last, by optimiser step.
   */
  baseCurve?: { step: number; reward: number; ci: number }[];
  /** The shipped base's own validation reward, drawn beside the curve of its retrained recipe. */
  baseCurveReference?: { label: string; reward: number; ci: number };
  /** The search for what makes it work (absent when disabled). */
  tuning?: {
    /** Variants tried, the faithful one first. */
    variants: VariantResult[];
    /** Key of the chosen combination (a variant key). */
    chosen: string;
    /** Why it was chosen. */
    reason: string;
    /** Key into models of the chosen combination's final model, evaluated on train and test. */
    modelKey: string;
    /** Key into models of that model's samples improved once by the improver (what a user deploys). */
    deployedKey?: string;
  };
}

/** Summary statistics of per-image rewards against the base's (same order). */
export function summariseRewards(
  rewards: readonly number[],
  base: readonly number[] | undefined,
): Pick<SetEval, "n" | "reward" | "ci" | "winRate" | "winRateCi"> {
  if (rewards.length === 0) throw new Error("summariseRewards: no rewards");
  const m = meanCI(rewards);
  const out: Pick<SetEval, "n" | "reward" | "ci" | "winRate" | "winRateCi"> = {
    n: m.n,
    reward: m.mean,
    ci: Number.isFinite(m.halfWidth) ? m.halfWidth : 0,
  };
  if (base) {
    if (base.length !== rewards.length) {
      throw new Error(
        `summariseRewards: ${rewards.length} rewards vs ${base.length} base rewards (must be paired)`,
      );
    }
    const w = winRate(rewards, base);
    out.winRate = w.winRate;
    out.winRateCi = Number.isFinite(w.ci.halfWidth) ? w.ci.halfWidth : 0;
  }
  return out;
}

/** Mean and 95 % half-width of the paired difference `a − b` (same prompts and seeds). */
export function pairedDelta(a: readonly number[], b: readonly number[]): { mean: number; ci: number } {
  if (a.length !== b.length || a.length === 0) {
    throw new Error(`pairedDelta: ${a.length} vs ${b.length} values (must be paired and non-empty)`);
  }
  const d = a.map((v, i) => v - b[i]);
  const m = meanCI(d);
  return { mean: m.mean, ci: Number.isFinite(m.halfWidth) ? m.halfWidth : 0 };
}
