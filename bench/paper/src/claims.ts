import { type IterationSeries, type PaperResults, pairedDelta } from "./results.js";
import { fmtDelta } from "./tables.js";

/** A claim of the paper checked against the measurements. */
export interface ClaimCheck {
  /** The claim, in the paper's words (shortened). */
  claim: string;
  /** "held", "did not hold", or "mixed" (held on one split or with overlapping intervals). */
  verdict: "held" | "did not hold" | "mixed";
  /** The figures behind the verdict. */
  evidence: string;
}

function lastKey(keys: readonly string[]): string {
  return keys[keys.length - 1];
}

function model(results: PaperResults, key: string) {
  const m = results.models[key];
  if (!m) throw new Error(`claims: no evaluation of ${key}`);
  return m;
}

/** "a − b = +0.012 ± 0.010" on a split (paired over the same prompts and seeds). */
function delta(
  results: PaperResults,
  a: string,
  b: string,
  split: "train" | "test",
): { mean: number; ci: number; text: string } {
  const d = pairedDelta(model(results, a)[split].rewards, model(results, b)[split].rewards);
  return { ...d, text: `${fmtDelta(d.mean)} ± ${d.ci.toFixed(3)}` };
}

function verdictOf(perSplit: boolean[], significant: boolean): ClaimCheck["verdict"] {
  if (perSplit.every(Boolean)) return significant ? "held" : "mixed";
  if (perSplit.some(Boolean)) return "mixed";
  return "did not hold";
}

/**
 * The paper's claims ("The method" in docs/architecture.md) as measured here. "held" needs the claim on both splits with every
 * paired difference's 95 % interval excluding 0; "mixed" is a claim true in the means but not everywhere
 * or not beyond the noise.
 */
export function checkClaims(results: PaperResults): ClaimCheck[] {
  const out: ClaimCheck[] = [];
  const spin = results.series.find((s) => s.label === "SPIN");
  const oursBase = results.series.find((s) => s.label === "Ours from base");
  const oursSpin = results.series.find((s) => s.label === "Ours from SPIN");
  if (spin && oursSpin && results.models.dpo) {
    out.push(orderingClaim(results, spin, oursSpin));
    out.push(diversityClaim(results, spin, oursSpin));
  }
  if (results.pairSizes.length >= 2) out.push(pairSizesClaim(results));
  if (results.models["improver-fix"] && oursSpin) out.push(generalisationClaim(results, oursSpin));
  const baselines = baselinesClaim(results);
  if (baselines) out.push(baselines);
  const tuned = tunedClaim(results);
  if (tuned) out.push(tuned);
  for (const s of [spin, oursBase].filter((x) => x !== undefined)) out.push(everyIterationClaim(results, s));
  return out;
}

/** Ours (from SPIN) > SPIN > offline Diffusion-DPO > base, on both splits. */
function orderingClaim(results: PaperResults, spin: IterationSeries, oursSpin: IterationSeries): ClaimCheck {
  const chain = [lastKey(oursSpin.keys), lastKey(spin.keys), "dpo", "base"];
  const names = ["ours (from SPIN)", "SPIN", "Diffusion-DPO", "base"];
  const perSplit: boolean[] = [];
  let significant = true;
  const parts: string[] = [];
  for (const split of ["train", "test"] as const) {
    let ok = true;
    const seg: string[] = [];
    for (let i = 0; i + 1 < chain.length; i++) {
      const d = delta(results, chain[i], chain[i + 1], split);
      if (d.mean <= 0) ok = false;
      if (d.mean - d.ci <= 0) significant = false;
      seg.push(`${names[i]} − ${names[i + 1]} = ${d.text}`);
    }
    perSplit.push(ok);
    parts.push(`${split}: ${seg.join("; ")}`);
  }
  return {
    claim: "ours > SPIN > Diffusion-DPO > base on reward",
    verdict: verdictOf(perSplit, significant),
    evidence: parts.join(". "),
  };
}

/** Ours' last iterate is at least as diverse as SPIN's, on both splits. */
function diversityClaim(results: PaperResults, spin: IterationSeries, oursSpin: IterationSeries): ClaimCheck {
  const vs: boolean[] = [];
  const vparts: string[] = [];
  for (const split of ["train", "test"] as const) {
    const a = model(results, lastKey(oursSpin.keys))[split].vendi;
    const b = model(results, lastKey(spin.keys))[split].vendi;
    vs.push(a >= b);
    vparts.push(`${split}: ours ${a.toFixed(2)} vs SPIN ${b.toFixed(2)}`);
  }
  return {
    claim: "ours' diversity (Vendi) ≥ SPIN's",
    verdict: verdictOf(vs, true),
    evidence: vparts.join("; "),
  };
}

/** The final reward rises with the online pairs per iteration (Table 2). */
function pairSizesClaim(results: PaperResults): ClaimCheck {
  const rows = results.pairSizes;
  const per: boolean[] = [];
  const parts: string[] = [];
  for (const split of ["train", "test"] as const) {
    const r = rows.map((p) => model(results, lastKey(p.keys))[split].reward);
    let mono = true;
    for (let i = 1; i < r.length; i++) if (r[i] <= r[i - 1]) mono = false;
    per.push(mono);
    parts.push(`${split}: ${rows.map((p, i) => `${p.pairs} pairs ${r[i].toFixed(3)}`).join(", ")}`);
  }
  const d = delta(results, lastKey(rows[rows.length - 1].keys), lastKey(rows[0].keys), "test");
  return {
    claim: "more online pairs per iteration help",
    verdict: verdictOf(per, d.mean - d.ci > 0),
    evidence: `${parts.join("; ")}; test, most − fewest pairs = ${d.text}`,
  };
}

/** The improver alone is strong on training prompts; the iterated policy closes the gap on test prompts. */
function generalisationClaim(results: PaperResults, oursSpin: IterationSeries): ClaimCheck {
  const ours = lastKey(oursSpin.keys);
  const fixTrain = delta(results, "improver-fix", "base", "train");
  const fixTest = delta(results, "improver-fix", "base", "test");
  const gapTrain = delta(results, ours, "improver-fix", "train");
  const gapTest = delta(results, ours, "improver-fix", "test");
  const strong = fixTrain.mean - fixTrain.ci > 0;
  const generalises = gapTest.mean > gapTrain.mean;
  return {
    claim:
      "the improvement model alone is strong on training prompts, the iterated policy generalises better to unseen prompts",
    verdict: strong && generalises ? "held" : strong || generalises ? "mixed" : "did not hold",
    evidence:
      `improver on base samples − base: train ${fixTrain.text}, test ${fixTest.text}; ` +
      `ours − improver-fix: train ${gapTrain.text}, test ${gapTest.text}`,
  };
}

/** Each evaluated baseline improves the base on test prompts (undefined when none, or no base, was evaluated). */
function baselinesClaim(results: PaperResults): ClaimCheck | undefined {
  const baselines = [
    ["sft", "SFT on winners"],
    ["dpo", "offline Diffusion-DPO"],
    ["improver-fix", "improver one-shot"],
  ].filter(([k]) => results.models[k]);
  if (baselines.length === 0 || !results.models.base) return undefined;
  const ds = baselines.map(([k, name]) => ({ name, d: delta(results, k, "base", "test") }));
  return {
    claim:
      "the baselines (SFT on winners, offline Diffusion-DPO, the improver one-shot) each improve the base",
    verdict: ds.every((x) => x.d.mean - x.d.ci > 0)
      ? "held"
      : ds.some((x) => x.d.mean > 0)
        ? "mixed"
        : "did not hold",
    evidence: `test, paired vs base: ${ds.map((x) => `${x.name} ${x.d.text}`).join("; ")}`,
  };
}

/** The tuned policy against the improver one-shot (undefined without both evaluations). */
function tunedClaim(results: PaperResults): ClaimCheck | undefined {
  const tuned = results.tuning?.modelKey;
  if (!tuned || !results.models[tuned] || !results.models["improver-fix"]) return undefined;
  const d = delta(results, tuned, "improver-fix", "test");
  const dTrain = delta(results, tuned, "improver-fix", "train");
  return {
    claim:
      "the iterated policy (the variant chosen on validation), sampled alone, matches or beats the improver one-shot on the base's samples",
    // "Matches" is within the paired interval: below it by more than the noise is a miss.
    verdict: d.mean >= 0 ? "held" : d.mean + d.ci < 0 ? "did not hold" : "mixed",
    evidence: `tuned − improver one-shot: test ${d.text}, train ${dTrain.text}`,
  };
}

/** An iterated method's test reward rises at every iteration. */
function everyIterationClaim(results: PaperResults, s: IterationSeries): ClaimCheck {
  const r = s.keys.map((k) => model(results, k).test.reward);
  const falling = r.slice(1).every((v, i) => v < r[i]);
  const rising = r.slice(1).every((v, i) => v > r[i]);
  return {
    claim: `${s.label} improves the policy every iteration (the reference run found it degrading instead)`,
    verdict: rising ? "held" : falling ? "did not hold" : "mixed",
    evidence: `test reward by iteration: ${r.map((v) => v.toFixed(3)).join(" → ")}`,
  };
}
