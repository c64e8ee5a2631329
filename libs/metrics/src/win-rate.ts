import { type MeanCI, meanCI } from "./stats.js";

/** Paired comparison of a method against a baseline. */
export interface WinRate {
  /** (wins + ties/2) / n. */
  winRate: number;
  /** Pairs where the method scored higher (by more than the tolerance). */
  wins: number;
  /** Pairs within the tolerance. */
  ties: number;
  /** Pairs where the baseline scored higher. */
  losses: number;
  /** Pairs compared. */
  n: number;
  /** Mean and confidence interval of the per-pair outcome (1 win, 0.5 tie, 0 loss). */
  ci: MeanCI;
}

/**
 * Win-rate of `method` against `baseline`, element i of each being the score of the same prompt and
 * seed; a tie (|Δ| ≤ tieTolerance, default exactly equal) counts half.
 */
export function winRate(method: ArrayLike<number>, baseline: ArrayLike<number>, tieTolerance = 0): WinRate {
  if (method.length !== baseline.length) {
    throw new Error(
      `winRate: ${method.length} method scores vs ${baseline.length} baseline scores (must be paired)`,
    );
  }
  if (method.length === 0) throw new Error("winRate: no pairs");
  if (!(tieTolerance >= 0)) throw new Error(`winRate: tieTolerance must be >= 0, got ${tieTolerance}`);
  const outcome = new Float64Array(method.length);
  let wins = 0;
  let ties = 0;
  let losses = 0;
  for (let i = 0; i < method.length; i++) {
    const a = method[i];
    const b = baseline[i];
    if (!Number.isFinite(a) || !Number.isFinite(b))
      throw new Error(`winRate: pair ${i} has a non-finite score (${a}, ${b})`);
    const d = a - b;
    if (Math.abs(d) <= tieTolerance) {
      ties++;
      outcome[i] = 0.5;
    } else if (d > 0) {
      wins++;
      outcome[i] = 1;
    } else {
      losses++;
      outcome[i] = 0;
    }
  }
  const n = method.length;
  return { winRate: (wins + 0.5 * ties) / n, wins, ties, losses, n, ci: meanCI(outcome) };
}

/** A scored item identified by prompt and seed, for matching a method's samples to a baseline's. */
export interface KeyedScore {
  /** Prompt of the sample. */
  prompt: string;
  /** Sampling seed; when absent the k-th sample of a prompt matches the other side's k-th. */
  seed?: number | null;
  /** Its score. */
  score: number;
}

/**
 * Win-rate over the samples of both sides that share (prompt, seed). Unmatched samples are left out
 * (`matched` says how many pairs were compared); throws when nothing matches.
 */
export function matchedWinRate(
  method: readonly KeyedScore[],
  baseline: readonly KeyedScore[],
  tieTolerance = 0,
): WinRate & { matched: number } {
  const baseByKey = new Map<string, number>();
  const baseSeen = new Map<string, number>();
  for (const b of baseline) baseByKey.set(sampleKey(b, baseSeen), b.score);
  const a: number[] = [];
  const b: number[] = [];
  const seen = new Map<string, number>();
  for (const m of method) {
    const k = sampleKey(m, seen);
    const s = baseByKey.get(k);
    if (s === undefined) continue;
    a.push(m.score);
    b.push(s);
  }
  if (a.length === 0) throw new Error("matchedWinRate: no sample matches the baseline on (prompt, seed)");
  return { ...winRate(a, b, tieTolerance), matched: a.length };
}

function sampleKey(s: KeyedScore, seen: Map<string, number>): string {
  if (s.seed !== undefined && s.seed !== null) return `${s.prompt}\u0000s${s.seed}`;
  const k = seen.get(s.prompt) ?? 0;
  seen.set(s.prompt, k + 1);
  return `${s.prompt}\u0000#${k}`;
}
