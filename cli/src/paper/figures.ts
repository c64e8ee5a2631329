import {
  blit,
  composeGrid,
  drawText,
  FONT_HEIGHT,
  type Image,
  type ImageBatch,
  solidImage,
  textWidth,
} from "@idpo/data";
import { linePlot, type PlotPanel } from "./line-plot.js";
import type { PaperResults } from "./results.js";

/** Image i of a batch as an Image (a copy). */
export function imageAt(batch: ImageBatch, i: number): Image {
  if (!Number.isInteger(i) || i < 0 || i >= batch.n)
    throw new Error(`imageAt: index ${i} outside [0, ${batch.n})`);
  const per = batch.height * batch.width * 3;
  return { height: batch.height, width: batch.width, data: batch.data.slice(i * per, (i + 1) * per) };
}

/** The reward-per-iteration figure: train and test panels, one line per iterated method. */
export function rewardPlot(results: PaperResults): Image {
  const panel = (split: "train" | "test", title: string): PlotPanel => ({
    title,
    series: results.series.map((s) => ({
      label: s.label,
      points: s.keys.map((k, j) => {
        const m = results.models[k];
        if (!m) throw new Error(`rewardPlot: no evaluation of ${k}`);
        return { x: s.firstIteration + j, y: m[split].reward };
      }),
    })),
  });
  return linePlot([panel("train", "TRAIN PROMPTS: MEAN REWARD"), panel("test", "TEST PROMPTS: MEAN REWARD")]);
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

/** Rows of images with a text label at the left of each row (e.g. one row per method). */
export function labelledRows(rows: readonly { label: string; images: readonly Image[] }[], scale = 4): Image {
  if (rows.length === 0) throw new Error("labelledRows: no rows");
  const textScale = 2;
  const labelW = 8 + Math.max(...rows.map((r) => textWidth(r.label.toUpperCase(), textScale)));
  const grid = composeGrid(
    rows.map((r) => r.images),
    { scale, padding: 2 },
  );
  const out = solidImage(grid.height, grid.width + labelW, [1, 1, 1]);
  blit(out, grid, 0, labelW);
  const cellH = (grid.height - 2) / rows.length;
  rows.forEach((r, i) => {
    const y = Math.round(2 + i * cellH + (cellH - 2 - FONT_HEIGHT * textScale) / 2);
    drawText(out, r.label, 4, y, [0, 0, 0], textScale);
  });
  return out;
}
