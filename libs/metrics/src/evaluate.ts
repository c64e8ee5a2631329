import { assertImage, type Image, parseShapesPrompt, type ShapesPrompt } from "@idpo/data";
import { type OracleScore, oracleReward } from "./oracle.js";
import { type MeanCI, meanCI } from "./stats.js";
import { vendiScore } from "./vendi.js";
import { matchedWinRate, type WinRate } from "./win-rate.js";

/**
 * Bad input at one item of a request: carries the item's index and which list it is in, so a
 * service can answer INVALID_ARGUMENT naming it.
 */
export class InvalidItemError extends Error {
  /** Index of the offending item in its list. */
  readonly index: number;
  /** Which list: "images", "prompts" or "reference". */
  readonly list: string;

  constructor(list: string, index: number, message: string) {
    super(`${list}[${index}]: ${message}`);
    this.name = "InvalidItemError";
    this.list = list;
    this.index = index;
  }
}

/** Checks shared by {@link scoreImages} and {@link evaluateSet}. */
export interface ScoreOptions {
  /** Required image side S of the world (any square size when absent). */
  size?: number;
}

/**
 * Oracle scores of images against prompts (`prompts[i]` for `images[i]`). Throws
 * {@link InvalidItemError} naming the first bad image (malformed, not square, wrong size) or
 * prompt (outside the grammar).
 */
export function scoreImages(
  images: readonly Image[],
  prompts: readonly string[],
  options: ScoreOptions = {},
): OracleScore[] {
  if (images.length !== prompts.length) {
    throw new Error(`scoreImages: ${images.length} images but ${prompts.length} prompts`);
  }
  const parsed = checkItems(
    images.map((image, i) => ({ image, prompt: prompts[i] })),
    "images",
    options.size,
  );
  return images.map((img, i) => oracleReward(img, parsed[i]));
}

/** One generated sample to evaluate. */
export interface EvalItem {
  /** The image. */
  image: Image;
  /** The prompt it was generated for. */
  prompt: string;
  /** Its sampling seed (pairs it with the reference sample of the same prompt and seed). */
  seed?: number | null;
}

/** Options of {@link evaluateSet}. */
export interface EvaluateOptions extends ScoreOptions {
  /** Samples of a reference method on the same prompts and seeds, for the win-rate. */
  reference?: readonly EvalItem[];
  /** Confidence level of the reward interval (default 0.95). */
  level?: number;
  /** Reward differences up to this count as ties in the win-rate (default 0). */
  tieTolerance?: number;
}

/** Per-prompt summary. */
export interface PromptEvaluation {
  /** The prompt. */
  prompt: string;
  /** Samples of it. */
  n: number;
  /** Their mean reward. */
  meanReward: number;
  /** Vendi score of its samples (null with fewer than 2). */
  vendi: number | null;
}

/** Result of {@link evaluateSet}. */
export interface Evaluation {
  /** Samples evaluated. */
  n: number;
  /** Mean reward with its confidence interval. */
  reward: MeanCI;
  /** Mean of each reward component. */
  components: Omit<OracleScore, "reward">;
  /** Per-prompt Vendi averaged over prompts with at least 2 samples (null when none has). */
  vendi: number | null;
  /** Prompts that entered the Vendi average. */
  vendiPrompts: number;
  /** One entry per distinct prompt, in first-seen order. */
  perPrompt: PromptEvaluation[];
  /** Win-rate against the reference on matched (prompt, seed) samples; null without a reference. */
  winRate: (WinRate & { matched: number }) | null;
  /** Mean reward of the reference set, when given. */
  referenceReward: MeanCI | null;
}

/**
 * Evaluates a set of samples grouped by prompt: mean oracle reward with a 95 % interval, mean of each
 * component, Vendi per prompt averaged over prompts, and the win-rate against a reference set when
 * given (ties half). Throws {@link InvalidItemError} on the first bad item, and on an empty set.
 */
export function evaluateSet(items: readonly EvalItem[], options: EvaluateOptions = {}): Evaluation {
  if (items.length === 0) throw new Error("evaluateSet: the set is empty");
  const parsed = checkItems(items, "images", options.size);
  const scores = items.map((it, i) => oracleReward(it.image, parsed[i]));
  const rewards = scores.map((s) => s.reward);
  const comp = { color: 0, bg: 0, shape: 0, size: 0, center: 0, clean: 0 };
  for (const s of scores) {
    comp.color += s.color / scores.length;
    comp.bg += s.bg / scores.length;
    comp.shape += s.shape / scores.length;
    comp.size += s.size / scores.length;
    comp.center += s.center / scores.length;
    comp.clean += s.clean / scores.length;
  }
  const groups = new Map<string, number[]>();
  items.forEach((it, i) => {
    const g = groups.get(it.prompt);
    if (g) g.push(i);
    else groups.set(it.prompt, [i]);
  });
  const perPrompt: PromptEvaluation[] = [];
  let vendiSum = 0;
  let vendiPrompts = 0;
  for (const [prompt, idx] of groups) {
    let sum = 0;
    for (const i of idx) sum += rewards[i];
    const vendi = idx.length >= 2 ? vendiScore(idx.map((i) => items[i].image)) : null;
    if (vendi !== null) {
      vendiSum += vendi;
      vendiPrompts++;
    }
    perPrompt.push({ prompt, n: idx.length, meanReward: sum / idx.length, vendi });
  }
  let win: Evaluation["winRate"] = null;
  let referenceReward: MeanCI | null = null;
  if (options.reference !== undefined) {
    if (options.reference.length === 0) throw new Error("evaluateSet: the reference set is empty");
    const refParsed = checkItems(options.reference, "reference", options.size);
    const refRewards = options.reference.map((it, i) => oracleReward(it.image, refParsed[i]).reward);
    referenceReward = meanCI(refRewards, options.level ?? 0.95);
    win = matchedWinRate(
      items.map((it, i) => ({ prompt: it.prompt, seed: it.seed, score: rewards[i] })),
      options.reference.map((it, i) => ({ prompt: it.prompt, seed: it.seed, score: refRewards[i] })),
      options.tieTolerance ?? 0,
    );
  }
  return {
    n: items.length,
    reward: meanCI(rewards, options.level ?? 0.95),
    components: comp,
    vendi: vendiPrompts > 0 ? vendiSum / vendiPrompts : null,
    vendiPrompts,
    perPrompt,
    winRate: win,
    referenceReward,
  };
}

function checkItems(
  items: readonly { image: Image; prompt: string }[],
  list: string,
  size: number | undefined,
): ShapesPrompt[] {
  if (size !== undefined && (!Number.isInteger(size) || size <= 0))
    throw new Error(`size must be a positive integer, got ${size}`);
  return items.map((it, i) => {
    try {
      assertImage(it.image, "image");
    } catch (e) {
      throw new InvalidItemError(list, i, (e as Error).message);
    }
    const { height, width } = it.image;
    if (height !== width)
      throw new InvalidItemError(list, i, `image is ${height}x${width}, the oracle needs a square image`);
    if (size !== undefined && height !== size) {
      throw new InvalidItemError(
        list,
        i,
        `image is ${height}x${width}, this world's images are ${size}x${size}`,
      );
    }
    try {
      return parseShapesPrompt(it.prompt);
    } catch (e) {
      throw new InvalidItemError(list, i, (e as Error).message);
    }
  });
}
