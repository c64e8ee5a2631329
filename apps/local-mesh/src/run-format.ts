import type { Estimate, Evaluation, Run } from "@idpo/proto";
import { RunMethod, RunStage, RunState } from "@idpo/proto";

/** "1m05s", "42s", "1h02m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function estimate(e: Estimate | undefined): string {
  if (!e) return "-";
  const half = (e.ci95High - e.ci95Low) / 2;
  return `${e.mean.toFixed(4)} ± ${half.toFixed(4)}`;
}

function name(value: string): string {
  return value.toLowerCase().replace(/_/g, "-");
}

/** The run's state and stage in words, e.g. "running · train · iteration 2/3". */
export function statusLine(run: Run): string {
  const parts = [name(RunState[run.state])];
  if (run.state === RunState.RUNNING) {
    parts.push(name(RunStage[run.stage]));
    if (run.iteration > 0) parts.push(`iteration ${run.iteration}/${run.config?.iterations ?? "?"}`);
  }
  return parts.join(" · ");
}

/**
 * One progress line: stage, iteration, step, loss and ETA of the current stage, e.g.
 * "train · iter 1/2 · step 30/60 · loss 0.6931 · ETA 12s · iteration 1: running, step 30/60".
 */
export function progressLine(run: Run): string {
  const parts = [statusLine(run)];
  const p = run.progress;
  if (p && run.state === RunState.RUNNING) {
    if (p.total > 0n) parts.push(`${p.done}/${p.total}`);
    if (p.loss !== undefined) parts.push(`loss ${p.loss.toFixed(4)}`);
    if (p.etaSeconds > 0) parts.push(`ETA ${formatDuration(p.etaSeconds)}`);
    if (p.message) parts.push(p.message);
  }
  if (run.state === RunState.FAILED) parts.push(run.error);
  return parts.join(" · ");
}

/** One row per evaluated model: label, reward ± CI, win-rate vs base, Vendi. */
export function evaluationRows(run: Run): { label: string; evaluation: Evaluation }[] {
  const rows: { label: string; evaluation: Evaluation }[] = [];
  if (run.baseEvaluation) rows.push({ label: "base", evaluation: run.baseEvaluation });
  for (const it of run.iterations) {
    if (it.evaluation) rows.push({ label: `iteration ${it.index}`, evaluation: it.evaluation });
  }
  return rows;
}

/** A text table of reward per iteration. */
export function rewardTable(run: Run): string {
  const lines = [
    `${"model".padEnd(12)}  ${"reward (95% CI)".padEnd(18)}  ${"win-rate vs base".padEnd(16)}  vendi`,
  ];
  for (const { label, evaluation: e } of evaluationRows(run)) {
    const win = e.winRateVsBase === undefined ? "-" : e.winRateVsBase.toFixed(3);
    lines.push(
      `${label.padEnd(12)}  ${estimate(e.reward).padEnd(18)}  ${win.padEnd(16)}  ${e.vendi.toFixed(3)}`,
    );
  }
  return lines.join("\n");
}

/** A multi-line human-readable description of a run (for `idpo run get`). */
export function describeRun(run: Run): string {
  const c = run.config;
  const lines = [`run ${run.runId}${c?.name ? ` (${c.name})` : ""}: ${statusLine(run)}`];
  if (c) {
    lines.push(
      `  method ${name(RunMethod[c.method])}, dataset ${c.dataset}, preset ${c.modelPreset}, ${c.iterations} iteration(s)` +
        (c.method === RunMethod.ITERATIVE_DPO
          ? ` of ${c.pairsPerIteration} pairs in shards of ${c.shardSize}`
          : ""),
    );
  }
  if (run.createTime)
    lines.push(`  created ${new Date(Number(run.createTime.seconds) * 1000).toISOString()}`);
  if (run.state === RunState.RUNNING && run.progress) lines.push(`  progress: ${progressLine(run)}`);
  if (run.error) lines.push(`  error: ${run.error}`);
  if (run.baseCheckpoint) lines.push(`  base model: ${run.baseCheckpoint.id}`);
  if (run.improverCheckpoint) lines.push(`  improvement model: ${run.improverCheckpoint.id}`);
  for (const it of run.iterations) {
    const loss = it.trainMetrics.loss;
    const acc = it.trainMetrics.implicit_acc;
    lines.push(
      `  iteration ${it.index}: ` +
        [
          it.shardsTotal > 0 ? `${it.pairs} pairs (${it.shardsDone}/${it.shardsTotal} shards)` : undefined,
          it.checkpoint ? `checkpoint ${it.checkpoint.id}` : undefined,
          loss !== undefined ? `loss ${loss.toFixed(4)}` : undefined,
          acc !== undefined ? `implicit_acc ${acc.toFixed(3)}` : undefined,
        ]
          .filter((x) => x !== undefined)
          .join(", "),
    );
  }
  if (evaluationRows(run).length > 0) {
    lines.push("");
    lines.push(rewardTable(run));
  }
  return lines.join("\n");
}
