import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { histogramChartOption } from "@idpo/charts";
import { renderChart } from "@idpo/charts/render";
import {
  composeGrid,
  convertPickAPic,
  encodePng,
  type HistogramSeries,
  histogram,
  type Image,
  type PickAPicStats,
  readPairManifest,
  readPairs,
  type ShapesSplit,
  textHistogram,
  writeShapesPairs,
} from "@idpo/data";
import { oracleRewardValue, quantiles } from "@idpo/metrics";
import { Command, InvalidArgumentError } from "commander";
import { intArg } from "../args.js";

/** Where command output goes (stdout for results, stderr for progress); swappable in tests. */
export interface DataIo {
  /** Result lines. */
  out: (line: string) => void;
  /** Progress and warnings. */
  err: (line: string) => void;
}

const processIo: DataIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

/** Options of `idpo data shapes`. */
export interface DataShapesOptions {
  /** Pairs to write. */
  pairs: number;
  /** Image side S. */
  size: number;
  /** Seed. */
  seed: number;
  /** Output directory. */
  out: string;
  /** Prompt split the pairs are drawn from (default "train"). */
  split?: ShapesSplit | "all";
  /** Replace an existing dataset in `out`. */
  overwrite?: boolean;
}

/** `idpo data shapes`: writes an offline shapes-world preference dataset. */
export async function runDataShapes(opts: DataShapesOptions, io: DataIo = processIo): Promise<void> {
  const split = opts.split ?? "train";
  if (split !== "train" && split !== "test" && split !== "all") {
    throw new InvalidArgumentError(`--split must be train, test or all, got "${split}"`);
  }
  const t0 = Date.now();
  const { manifest, stats } = await writeShapesPairs(
    opts.out,
    { count: opts.pairs, size: opts.size, seed: opts.seed, split, reward: oracleRewardValue },
    {
      overwrite: opts.overwrite,
      onProgress: (done, total) =>
        io.err(`shapes: ${done}/${total} pairs (${((Date.now() - t0) / 1000).toFixed(1)} s)`),
    },
  );
  io.out(
    `wrote ${manifest.count} pairs (${opts.size}x${opts.size}, ${split} prompts, seed ${opts.seed}) to ${opts.out} ` +
      `in ${manifest.shards.length} shard(s); ${stats.droppedNearTies} near-ties dropped, ` +
      `${stats.upsets} Bradley-Terry upsets`,
  );
}

/** Options of `idpo data stats`. */
export interface DataStatsOptions {
  /** Sample pairs drawn into sample-pairs.png (default 16). */
  samples?: number;
  /** Histogram bins (default 20). */
  bins?: number;
}

/** What `idpo data stats` found and wrote. */
export interface DataStatsResult {
  /** Pairs read. */
  count: number;
  /** p5/p50/p95 of the winner rewards (null without rewards). */
  winner: [number, number, number] | null;
  /** p5/p50/p95 of the loser rewards (null without rewards). */
  loser: [number, number, number] | null;
  /** Files written. */
  files: string[];
}

/**
 * `idpo data stats DIR`: streams the dataset, prints reward quantiles and a text histogram of winner
 * and loser rewards, and writes `winner-reward-hist.png` and `sample-pairs.png` into DIR.
 */
export async function runDataStats(
  dir: string,
  opts: DataStatsOptions = {},
  io: DataIo = processIo,
): Promise<DataStatsResult> {
  const manifest = await readPairManifest(dir);
  const samples = opts.samples ?? 16;
  const winners = new Float64Array(manifest.count);
  const losers = new Float64Array(manifest.count);
  let rewarded = 0;
  let n = 0;
  const sampleWinners: Image[] = [];
  const sampleLosers: Image[] = [];
  const prompts = new Set<string>();
  const promptCap = 100_000;
  for await (const rec of readPairs(dir)) {
    if (n >= manifest.count) throw new Error(`${dir}: more records than the manifest's ${manifest.count}`);
    if (rec.winnerReward !== null && rec.loserReward !== null) {
      winners[rewarded] = rec.winnerReward;
      losers[rewarded] = rec.loserReward;
      rewarded++;
    }
    if (sampleWinners.length < samples) {
      sampleWinners.push(rec.winner);
      sampleLosers.push(rec.loser);
    }
    if (prompts.size < promptCap) prompts.add(rec.prompt);
    n++;
    if (n % 20_000 === 0) io.err(`stats: ${n}/${manifest.count} pairs read`);
  }
  io.out(
    `${dir}: ${n} pairs, ${manifest.height}x${manifest.width}, source ${manifest.source}` +
      `${manifest.seed !== null ? `, seed ${manifest.seed}` : ""}, ` +
      `${prompts.size >= promptCap ? `>= ${promptCap}` : prompts.size} distinct prompts`,
  );
  const files: string[] = [];
  let wq: DataStatsResult["winner"] = null;
  let lq: DataStatsResult["loser"] = null;
  if (rewarded > 0) {
    const w = winners.subarray(0, rewarded);
    const l = losers.subarray(0, rewarded);
    wq = quantiles(w, [0.05, 0.5, 0.95]) as [number, number, number];
    lq = quantiles(l, [0.05, 0.5, 0.95]) as [number, number, number];
    const fmt = (q: number[]) => q.map((v) => v.toFixed(3)).join(" / ");
    io.out(`winner reward p5 / p50 / p95: ${fmt(wq)}   (span p5..p95 ${(wq[2] - wq[0]).toFixed(3)})`);
    io.out(`loser  reward p5 / p50 / p95: ${fmt(lq)}`);
    let above = 0;
    for (let i = 0; i < rewarded; i++) if (w[i] > l[i]) above++;
    io.out(`winner reward > loser reward in ${((100 * above) / rewarded).toFixed(1)} % of pairs`);
    const series = [
      { label: "winners", values: w },
      { label: "losers", values: l },
    ];
    io.out(textHistogram(series, { bins: opts.bins ?? 20 }));
    const histPath = join(dir, "winner-reward-hist.png");
    const { svg, png } = renderHistogram(series, opts.bins ?? 20);
    await writeFile(histPath, png);
    await writeFile(histPath.replace(/\.png$/, ".svg"), svg);
    files.push(histPath);
    io.out(`wrote ${histPath} (histogram of winner and loser rewards)`);
  } else {
    io.out(`no rewards stored (source ${manifest.source}): no reward histogram`);
  }
  if (sampleWinners.length > 0) {
    const cols = Math.min(8, sampleWinners.length);
    const rows: Image[][] = [];
    for (let s = 0; s < sampleWinners.length; s += cols) {
      rows.push(sampleWinners.slice(s, s + cols));
      rows.push(sampleLosers.slice(s, s + cols));
    }
    const scale = Math.max(1, Math.floor(64 / Math.max(manifest.height, manifest.width)));
    const gridPath = join(dir, "sample-pairs.png");
    await writeFile(gridPath, encodePng(composeGrid(rows, { scale, padding: 2 })));
    files.push(gridPath);
    io.out(`wrote ${gridPath} (${sampleWinners.length} pairs; in each pair of rows, winners above losers)`);
  }
  return { count: n, winner: wq, loser: lq, files };
}

/** Options of `idpo data pickapic`. */
export interface DataPickapicOptions {
  /** Parquet files and/or directories of them. */
  in: string[];
  /** Output side S. */
  size: number;
  /** Output directory. */
  out: string;
  /** Replace an existing dataset in `out`. */
  overwrite?: boolean;
}

/** `idpo data pickapic`: converts Pick-a-Pic parquet shards to the pair format. */
export async function runDataPickapic(
  opts: DataPickapicOptions,
  io: DataIo = processIo,
): Promise<PickAPicStats> {
  const t0 = Date.now();
  const { manifest, stats } = await convertPickAPic(opts.in, opts.out, {
    size: opts.size,
    overwrite: opts.overwrite,
    onProgress: (s, file) =>
      io.err(
        `pickapic: ${file}: ${s.rowGroups} row groups, ${s.rows} rows, ${s.pairs} pairs (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      ),
  });
  const sk = stats.skipped;
  const skipped = sk.badJpeg + sk.missingLabel + sk.badLabel + sk.missingCaption + sk.missingImage;
  io.out(
    `wrote ${manifest.count} pairs (${opts.size}x${opts.size}) to ${opts.out} from ${stats.files} file(s), ${stats.rows} rows: ` +
      `${stats.ties} ties dropped, ${skipped} corrupt rows skipped (bad JPEG ${sk.badJpeg}, missing label ${sk.missingLabel}, ` +
      `bad label ${sk.badLabel}, missing caption ${sk.missingCaption}, missing image ${sk.missingImage})`,
  );
  return stats;
}

/** `idpo data shapes|stats|pickapic`: the datasets. */
export function dataCommand(): Command {
  const data = new Command("data").description(
    "preference datasets: the shapes world, Pick-a-Pic ingestion, statistics",
  );
  data
    .command("shapes")
    .description(
      "write an offline shapes-world preference dataset (pairs labelled Bradley-Terry by the oracle)",
    )
    .requiredOption("--pairs <n>", "number of pairs", intArg("--pairs", 1))
    .option("--size <s>", "image side in pixels", intArg("--size", 4, 4096), 16)
    .option("--seed <k>", "seed", intArg("--seed", 0, 2 ** 32 - 1), 0)
    .requiredOption("--out <dir>", "output directory")
    .option("--split <split>", "prompt set: train, test or all", "train")
    .option("--overwrite", "replace a dataset already in --out", false)
    .action(async (opts: DataShapesOptions) => {
      await runDataShapes(opts);
    });
  data
    .command("stats")
    .description("reward distribution (text + winner-reward-hist.png) and sample-pairs.png of a pair dataset")
    .argument("<dir>", "pair dataset directory")
    .option("--samples <n>", "pairs drawn into sample-pairs.png", intArg("--samples", 1, 256), 16)
    .option("--bins <n>", "histogram bins", intArg("--bins", 2, 200), 20)
    .action(async (dir: string, opts: DataStatsOptions) => {
      await runDataStats(dir, opts);
    });
  data
    .command("pickapic")
    .description("convert Pick-a-Pic parquet shards (files or directories) to the pair format")
    .requiredOption("--in <paths...>", "parquet files or directories holding them")
    .requiredOption("--size <s>", "image side in pixels", intArg("--size", 4, 4096))
    .requiredOption("--out <dir>", "output directory")
    .option("--overwrite", "replace a dataset already in --out", false)
    .action(async (opts: DataPickapicOptions) => {
      await runDataPickapic(opts);
    });
  return data;
}

/** The winner and loser reward histograms over [0, 1] as a chart (SVG and PNG). */
function renderHistogram(series: readonly HistogramSeries[], bins: number): { svg: string; png: Buffer } {
  const hs = series.map((s) => ({ s, h: histogram(s.values, bins, 0, 1) }));
  const option = histogramChartOption({
    title: "oracle reward",
    xName: "reward",
    edges: hs[0].h.edges,
    series: hs.map(({ s, h }) => ({ name: s.label, counts: h.counts, n: s.values.length })),
  });
  return renderChart(option, { width: 560, height: 320 });
}
