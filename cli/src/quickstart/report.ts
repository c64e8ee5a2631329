import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { fromBinary, toJson } from "@bufbuild/protobuf";
import type { ArtifactStore } from "@idpo/bus";
import { renderChart } from "@idpo/charts/render";
import { composeGrid, decodePng, encodePng, type Image } from "@idpo/data";
import { rewardTable } from "@idpo/local-mesh";
import { decodePairShard } from "@idpo/mesh";
import { GenerateImagesResponseSchema, type Run, RunSchema } from "@idpo/proto";
import { QUICKSTART_REWARD_SIZE, quickstartRewardChart } from "./reward-chart.js";

/** Time spent in one stage of the run, as observed through WatchRun. */
export interface StageTiming {
  /** Stage name, e.g. "RUN_STAGE_TRAIN". */
  stage: string;
  /** Iteration (0 before the first). */
  iteration: number;
  /** Seconds from the start of the quickstart when the stage began. */
  startSeconds: number;
  /** Seconds spent in it. */
  seconds: number;
}

/** What goes into the report besides the run. */
export interface ReportInputs {
  /** The finished run (GetRun). */
  run: Run;
  /** Where the run's shards and evaluation samples are stored. */
  artifacts: ArtifactStore;
  /** Wall time of the whole quickstart so far, seconds. */
  wallSeconds: number;
  /** CPU time of this process (all threads, user + system) so far, seconds. */
  cpuSeconds?: number;
  /** Per-stage timings. */
  stages: StageTiming[];
  /** Pairs shown per iteration in the pair grids. */
  pairsShown?: number;
  /** Evaluation samples shown per model in the samples grid. */
  samplesShown?: number;
}

/** Integer enlargement of the 16-pixel images in grids, so they can be seen. */
const GRID_SCALE = 4;

/** Samples of evaluation k (0 = base), in prompt-major order, decoded from the stored artifact. */
async function evaluationSamples(
  artifacts: ArtifactStore,
  runId: string,
  k: number,
): Promise<Image[] | undefined> {
  const name = k === 0 ? `runs/${runId}/eval/base.samples` : `runs/${runId}/eval/iter-${k}.samples`;
  const bytes = await artifacts.get(name);
  if (!bytes) return undefined;
  const res = fromBinary(GenerateImagesResponseSchema, bytes);
  const out: Image[] = [];
  for (const g of res.images) {
    if (g.image?.data.case === "png") out.push(decodePng(g.image.data.value));
  }
  return out;
}

/**
 * Writes the report folder: metrics.json (the whole Run, stage timings, wall time), rewards.txt (reward
 * per iteration), rewards.png and rewards.svg (the same as a chart with 95 % bands), pairs-iter-<k>.png
 * (losers above, the improver's winners below, from the iteration's first shards) and samples.png (one
 * row per model, the same prompts and seeds in every row). Returns the files written.
 */
export async function writeReport(dir: string, inputs: ReportInputs): Promise<string[]> {
  const { run, artifacts } = inputs;
  await mkdir(dir, { recursive: true });
  const written: string[] = [];
  const put = async (name: string, data: string | Uint8Array) => {
    await writeFile(join(dir, name), data);
    written.push(join(dir, name));
  };

  await put(
    "metrics.json",
    `${JSON.stringify(
      {
        run: toJson(RunSchema, run),
        wallSeconds: Math.round(inputs.wallSeconds * 10) / 10,
        cpuSeconds: inputs.cpuSeconds === undefined ? undefined : Math.round(inputs.cpuSeconds * 10) / 10,
        stages: inputs.stages.map((s) => ({ ...s, seconds: Math.round(s.seconds * 10) / 10 })),
      },
      null,
      2,
    )}\n`,
  );

  const lines = [
    `run ${run.runId}: reward of each model on ${run.config?.evalPrompts.length ?? 0} held-out prompts`,
  ];
  lines.push(`× ${run.config?.evalSamplesPerPrompt ?? 0} samples (same seeds for every model)`, "");
  lines.push(rewardTable(run), "");
  for (const it of run.iterations) {
    const m = Object.entries(it.trainMetrics)
      .map(([k, v]) => `${k} ${Number(v).toPrecision(4)}`)
      .join(", ");
    lines.push(`iteration ${it.index}: ${it.pairs} online pairs; final training metrics: ${m || "-"}`);
  }
  await put("rewards.txt", `${lines.join("\n")}\n`);

  const chart = quickstartRewardChart(run);
  if (chart) {
    const { svg, png } = renderChart(chart, QUICKSTART_REWARD_SIZE);
    await put("rewards.png", png);
    await put("rewards.svg", svg);
  }

  const pairsShown = inputs.pairsShown ?? 12;
  for (const it of run.iterations) {
    const losers: Image[] = [];
    const winners: Image[] = [];
    const shards = (await artifacts.list(`runs/${run.runId}/iter-${it.index}/`)).filter((a) =>
      a.name.endsWith(".pairs"),
    );
    for (const info of shards) {
      if (losers.length >= pairsShown) break;
      const bytes = await artifacts.get(info.name);
      if (!bytes) continue;
      for (const rec of decodePairShard(bytes).records) {
        if (losers.length >= pairsShown) break;
        losers.push(rec.loser);
        winners.push(rec.winner);
      }
    }
    if (losers.length > 0) {
      await put(
        `pairs-iter-${it.index}.png`,
        encodePng(composeGrid([losers, winners], { scale: GRID_SCALE })),
      );
    }
  }

  const samplesShown = inputs.samplesShown ?? 24;
  const rows: Image[][] = [];
  const base = await evaluationSamples(artifacts, run.runId, 0);
  if (base) rows.push(base.slice(0, samplesShown));
  for (const it of run.iterations) {
    const s = await evaluationSamples(artifacts, run.runId, it.index);
    if (s) rows.push(s.slice(0, samplesShown));
  }
  if (rows.length > 0) await put("samples.png", encodePng(composeGrid(rows, { scale: GRID_SCALE })));
  return written;
}
