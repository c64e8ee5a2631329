import type { ModelEval, PaperResults, SetEval, TrainMetrics } from "./results.js";
import { pairedDelta } from "./results.js";

/** Column alignment of a Markdown table. */
export type Align = "left" | "right";

/**
 * A GitHub-flavoured Markdown table. Cells are escaped (`|` → `\|`, newlines → spaces); every row must
 * have as many cells as there are headers.
 */
export function markdownTable(
  headers: readonly string[],
  rows: readonly (readonly string[])[],
  align?: readonly Align[],
): string {
  if (headers.length === 0) throw new Error("markdownTable: no columns");
  if (align && align.length !== headers.length) {
    throw new Error(`markdownTable: ${align.length} alignments for ${headers.length} columns`);
  }
  rows.forEach((r, i) => {
    if (r.length !== headers.length)
      throw new Error(`markdownTable: row ${i} has ${r.length} cells, expected ${headers.length}`);
  });
  const esc = (s: string) => s.replace(/\|/g, "\\|").replace(/\r?\n/g, " ");
  const line = (cells: readonly string[]) => `| ${cells.map(esc).join(" | ")} |`;
  const sep = headers.map((_, i) => ((align?.[i] ?? "left") === "right" ? "---:" : "---"));
  return [line(headers), `|${sep.map((s) => ` ${s} `).join("|")}|`, ...rows.map(line)].join("\n");
}

/** "0.812 ± 0.012" (3 decimals). */
export function fmtReward(mean: number, ci: number): string {
  return `${mean.toFixed(3)} ± ${ci.toFixed(3)}`;
}

/** "+0.012" / "−0.034" (signed, 3 decimals, a real minus sign). */
export function fmtDelta(v: number, digits = 3): string {
  const s = Math.abs(v).toFixed(digits);
  if (Number(s) === 0) return `±${s}`;
  return v > 0 ? `+${s}` : `−${s}`;
}

/** "57.3 %" with an optional "± 4.1". */
export function fmtPercent(v: number | undefined, ci?: number): string {
  if (v === undefined) return "—";
  return ci === undefined
    ? `${(v * 100).toFixed(1)} %`
    : `${(v * 100).toFixed(1)} ± ${(ci * 100).toFixed(1)} %`;
}

/** Vendi with 2 decimals. */
export function fmtVendi(v: number): string {
  return v.toFixed(2);
}

function requireModel(results: PaperResults, key: string): ModelEval {
  const m = results.models[key];
  if (!m) throw new Error(`results: no evaluation of model "${key}"`);
  return m;
}

/**
 * Tables 1 and 4: one row per method on one prompt split: reward (mean ± 95 % CI), paired Δ reward vs base,
 * win-rate vs base (same prompts and seeds), Vendi.
 */
export function methodTable(
  results: PaperResults,
  split: "train" | "test",
  rows: readonly string[] = results.mainRows,
): string {
  const base = requireModel(results, "base")[split];
  const body = rows.map((key) => {
    const m = requireModel(results, key);
    const s: SetEval = m[split];
    const d = key === "base" ? undefined : pairedDelta(s.rewards, base.rewards);
    return [
      m.label,
      fmtReward(s.reward, s.ci),
      d ? `${fmtDelta(d.mean)} ± ${d.ci.toFixed(3)}` : "—",
      key === "base" ? "—" : fmtPercent(s.winRate, s.winRateCi),
      fmtVendi(s.vendi),
    ];
  });
  return markdownTable(
    ["method", "reward (95 % CI)", "Δ vs base (paired)", "win-rate vs base", "Vendi"],
    body,
    ["left", "right", "right", "right", "right"],
  );
}

/** Table 2: "ours" from the base with three sizes of online pairs per iteration, final iterate. */
export function pairSizeTable(results: PaperResults): string {
  const base = requireModel(results, "base");
  const body = results.pairSizes.map((row) => {
    const last = requireModel(results, row.keys[row.keys.length - 1]);
    const perIter = row.keys.map((k) => requireModel(results, k).train.reward.toFixed(3)).join(" → ");
    return [
      String(row.pairs),
      fmtReward(last.train.reward, last.train.ci),
      fmtReward(last.test.reward, last.test.ci),
      fmtPercent(last.test.winRate),
      fmtVendi(last.test.vendi),
      `${base.train.reward.toFixed(3)} → ${perIter}`,
    ];
  });
  return markdownTable(
    [
      "online pairs / iteration",
      "train reward",
      "test reward",
      "test win-rate vs base",
      "test Vendi",
      "train reward by iteration",
    ],
    body,
    ["right", "right", "right", "right", "right", "left"],
  );
}

/**
 * Table 3: the improvement model as a one-shot fixer of the base model's samples, beside the base and the
 * iterated policies, on both splits.
 */
export function fixerTable(results: PaperResults, rows: readonly string[]): string {
  const base = requireModel(results, "base");
  const body = rows.map((key) => {
    const m = requireModel(results, key);
    const cells = [m.label];
    for (const split of ["train", "test"] as const) {
      const s = m[split];
      cells.push(fmtReward(s.reward, s.ci));
      cells.push(key === "base" ? "—" : fmtDelta(pairedDelta(s.rewards, base[split].rewards).mean));
    }
    return cells;
  });
  return markdownTable(["model", "train reward", "Δ train", "test reward", "Δ test"], body, [
    "left",
    "right",
    "right",
    "right",
    "right",
  ]);
}

/** Reward per iteration of each iterated method (train / test). */
export function iterationTable(results: PaperResults): string {
  const maxIter = Math.max(...results.series.map((s) => s.firstIteration + s.keys.length - 1));
  const headers = ["method"];
  for (let k = 0; k <= maxIter; k++) headers.push(`iter ${k}`);
  const body = results.series.map((s) => {
    const cells = [s.label];
    for (let k = 0; k <= maxIter; k++) {
      const j = k - s.firstIteration;
      if (j < 0 || j >= s.keys.length) {
        cells.push("");
        continue;
      }
      const m = requireModel(results, s.keys[j]);
      cells.push(`${m.train.reward.toFixed(3)} / ${m.test.reward.toFixed(3)}`);
    }
    return cells;
  });
  return markdownTable(headers, body, ["left", ...headers.slice(1).map(() => "right" as const)]);
}

/** Final training metrics of the preference jobs (what DPO did to the likelihoods). */
export function trainMetricsTable(metrics: Record<string, TrainMetrics>): string {
  const names = ["loss", "implicit_acc", "raw_model_loss", "ref_loss"];
  const body = Object.entries(metrics).map(([label, m]) => [
    label,
    ...names.map((n) => (m[n] === undefined || !Number.isFinite(m[n]) ? "—" : m[n].toPrecision(3))),
  ]);
  if (body.length === 0) return "_no preference jobs recorded_";
  return markdownTable(["job", ...names], body, ["left", "right", "right", "right", "right"]);
}

/** The tuning search: one row per variant, validation reward per iteration and the change. */
export function tuningTable(results: PaperResults): string {
  const t = results.tuning;
  if (!t) return "_the search was disabled in this configuration_";
  const iters = Math.max(...t.variants.map((v) => v.validation.length));
  const headers = ["variant", "change"];
  for (let k = 0; k < iters; k++) headers.push(k === 0 ? "start" : `iter ${k}`);
  headers.push("last Δ vs start", "Vendi (last)", "implicit_acc (last job)", "raw − ref ε-MSE (last job)");
  const body = t.variants.map((v) => {
    const cells = [v.key === t.chosen ? `**${v.label}** (chosen)` : v.label, v.change];
    for (let k = 0; k < iters; k++) {
      cells.push(k < v.validation.length ? fmtReward(v.validation[k], v.validationCi[k] ?? 0) : "");
    }
    const last = v.validation[v.validation.length - 1];
    cells.push(v.validation.length > 1 ? fmtDelta(last - v.validation[0]) : "—");
    cells.push(
      v.validationVendi.length > 0 ? fmtVendi(v.validationVendi[v.validationVendi.length - 1]) : "—",
    );
    const m = v.trainMetrics[v.trainMetrics.length - 1] ?? {};
    cells.push(m.implicit_acc === undefined ? "—" : m.implicit_acc.toFixed(2));
    cells.push(
      m.raw_model_loss === undefined || m.ref_loss === undefined
        ? "—"
        : fmtDelta(m.raw_model_loss - m.ref_loss, 4),
    );
    return cells;
  });
  return markdownTable(headers, body, ["left", "left", ...headers.slice(2).map(() => "right" as const)]);
}

/**
 * "What made it work": each variant's last iterate on validation (what the choice read) beside its test
 * reward, paired Δ against the base with its 95 % CI, win-rate, and Vendi relative to the base's.
 */
export function remedyTable(results: PaperResults): string {
  const t = results.tuning;
  if (!t) return "_the search was disabled in this configuration_";
  const base = requireModel(results, "base").test;
  const body = t.variants.map((v) => {
    const last = v.validation.length - 1;
    const cells = [
      v.key === t.chosen ? `**${v.label}** (chosen)` : v.label,
      v.change,
      fmtReward(v.validation[last], v.validationCi[last] ?? 0),
      fmtDelta(v.validation[last] - v.validation[0]),
    ];
    const m = v.modelKey ? results.models[v.modelKey] : undefined;
    if (!m) return [...cells, "—", "—", "—", "—"];
    const d = pairedDelta(m.test.rewards, base.rewards);
    return [
      ...cells,
      fmtReward(m.test.reward, m.test.ci),
      `${fmtDelta(d.mean)} ± ${d.ci.toFixed(3)}`,
      fmtPercent(m.test.winRate, m.test.winRateCi),
      (m.test.vendi / base.vendi).toFixed(2),
    ];
  });
  return markdownTable(
    [
      "variant",
      "change",
      "validation (last)",
      "Δ validation",
      "test reward",
      "Δ test vs base (paired)",
      "test win-rate",
      "Vendi / base's",
    ],
    body,
    ["left", "left", "right", "right", "right", "right", "right", "right"],
  );
}
