import { type BandedPanel, rewardChartOption } from "@idpo/charts";
import { renderChart, svgToPng } from "@idpo/charts/render";
import { composeGrid, encodePng, type Image, type ImageBatch } from "@idpo/data";
import type { EChartsOption } from "echarts";
import type { PaperResults } from "./results.js";

/** Size of the reward-per-iteration figure in pixels (two panels side by side). */
export const REWARD_FIGURE_SIZE = { width: 960, height: 400 } as const;

/** Image i of a batch as an Image (a copy). */
export function imageAt(batch: ImageBatch, i: number): Image {
  if (!Number.isInteger(i) || i < 0 || i >= batch.n)
    throw new Error(`imageAt: index ${i} outside [0, ${batch.n})`);
  const per = batch.height * batch.width * 3;
  return { height: batch.height, width: batch.width, data: batch.data.slice(i * per, (i + 1) * per) };
}

/**
 * The reward-per-iteration chart: train and test panels, one line per iterated method (x: its iterations,
 * from `firstIteration`) with its mean reward and a band of its 95 % interval.
 */
export function rewardChart(results: Pick<PaperResults, "models" | "series">): EChartsOption {
  const panel = (split: "train" | "test", title: string): BandedPanel => ({
    title,
    lines: results.series.map((s) => {
      const evals = s.keys.map((k) => {
        const m = results.models[k];
        if (!m) throw new Error(`rewardChart: no evaluation of ${k}`);
        return m[split];
      });
      return {
        name: s.label,
        x: s.keys.map((_, j) => s.firstIteration + j),
        mean: evals.map((e) => e.reward),
        low: evals.map((e) => e.reward - e.ci),
        high: evals.map((e) => e.reward + e.ci),
      };
    }),
  });
  return rewardChartOption({
    panels: [panel("train", "Train prompts: mean reward"), panel("test", "Test prompts: mean reward")],
  });
}

/** Size of the base model's learning-curve figure in pixels. */
export const CURVE_FIGURE_SIZE = { width: 560, height: 360 } as const;

/** The base model's learning curve: validation reward (95 % band) against base-training steps. */
export function learningCurveChart(
  curve: NonNullable<PaperResults["baseCurve"]>,
  reference?: { label: string; reward: number },
): EChartsOption {
  if (curve.length === 0) throw new Error("learningCurveChart: the curve has no points");
  const x = curve.map((p) => p.step);
  const lines = [
    {
      name: "base job's checkpoints",
      x,
      mean: curve.map((p) => p.reward),
      low: curve.map((p) => p.reward - p.ci),
      high: curve.map((p) => p.reward + p.ci),
    },
  ];
  if (reference) {
    const r = x.map(() => reference.reward);
    lines.push({ name: reference.label, x, mean: r, low: r, high: r });
  }
  return rewardChartOption({
    panels: [{ title: "Base model: validation reward by training step", lines }],
    xName: "base-training step",
    yName: "reward",
    xLabel: (v) => String(v),
  });
}

/** The learning-curve figure as SVG and PNG. */
export function learningCurveFigure(
  curve: NonNullable<PaperResults["baseCurve"]>,
  reference?: { label: string; reward: number },
): { svg: string; png: Buffer } {
  return renderChart(learningCurveChart(curve, reference), CURVE_FIGURE_SIZE);
}

/** The reward-per-iteration figure as SVG and PNG. */
export function rewardFigure(results: Pick<PaperResults, "models" | "series">): { svg: string; png: Buffer } {
  return renderChart(rewardChart(results), REWARD_FIGURE_SIZE);
}

/**
 * A model's same-seed sample grid: one row per prompt (the first `rows` prompts of a set), the first
 * `cols` samples of each (the seeds every model shares), enlarged `scale` times.
 */
export function sampleGrid(
  batch: ImageBatch,
  perPrompt: number,
  rows: number,
  cols: number,
  scale = 4,
): Image {
  const nPrompts = Math.floor(batch.n / perPrompt);
  const grid: Image[][] = [];
  for (let p = 0; p < Math.min(rows, nPrompts); p++) {
    const row: Image[] = [];
    for (let j = 0; j < Math.min(cols, perPrompt); j++) row.push(imageAt(batch, p * perPrompt + j));
    grid.push(row);
  }
  return composeGrid(grid, { scale, padding: 2 });
}

const LABEL_FONT_SIZE = 15;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * Rows of images with a text label at the left of each row (e.g. one row per method): the pixel grid
 * embedded in an SVG beside its labels, set in the charts' font, and that SVG rasterised.
 */
export function labelledRows(
  rows: readonly { label: string; images: readonly Image[] }[],
  scale = 4,
): { svg: string; png: Buffer } {
  if (rows.length === 0) throw new Error("labelledRows: no rows");
  const grid = composeGrid(
    rows.map((r) => r.images),
    { scale, padding: 2 },
  );
  // Inter's advance averages about 0.6 em on labels like these; a generous width keeps the longest clear.
  const labelW = 16 + Math.ceil(Math.max(...rows.map((r) => r.label.length)) * LABEL_FONT_SIZE * 0.62);
  const width = labelW + grid.width;
  const cellH = (grid.height - 2) / rows.length;
  const labels = rows.map((r, i) => {
    const y = Math.round(2 + i * cellH + (cellH - 2) / 2 + LABEL_FONT_SIZE * 0.35);
    return `<text x="${labelW - 10}" y="${y}" text-anchor="end" font-family="sans-serif" font-size="${LABEL_FONT_SIZE}" fill="#222">${escapeXml(r.label)}</text>`;
  });
  const href = `data:image/png;base64,${encodePng(grid).toString("base64")}`;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${grid.height}" viewBox="0 0 ${width} ${grid.height}">`,
    `<rect width="${width}" height="${grid.height}" fill="#ffffff"/>`,
    `<image x="${labelW}" y="0" width="${grid.width}" height="${grid.height}" href="${href}"/>`,
    ...labels,
    "</svg>",
  ].join("\n");
  return { svg, png: svgToPng(svg) };
}
