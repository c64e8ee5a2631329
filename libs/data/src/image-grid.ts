import { assertImage, type Image, solidImage } from "./image.js";
import { upscaleNearest } from "./resize.js";
import type { Rgb } from "./shapes-grammar.js";

/** Layout of an image grid. */
export interface GridOptions {
  /** Pixels between cells and around the grid (default 2). */
  padding?: number;
  /** Color of the padding (default white). */
  background?: Rgb;
  /** Integer nearest-neighbour enlargement of every cell (default 1). */
  scale?: number;
}

/**
 * Lays out rows of images (rows may have different lengths; cells are as large as the largest image,
 * smaller images sit at the cell's top-left) into one image, e.g. for sample grids.
 */
export function composeGrid(rows: readonly (readonly Image[])[], options: GridOptions = {}): Image {
  const pad = options.padding ?? 2;
  const scale = options.scale ?? 1;
  const bgc = options.background ?? [1, 1, 1];
  if (!Number.isInteger(pad) || pad < 0)
    throw new Error(`composeGrid: padding must be a non-negative integer, got ${pad}`);
  if (rows.length === 0 || rows.every((r) => r.length === 0)) throw new Error("composeGrid: no images given");
  let cellH = 0;
  let cellW = 0;
  let cols = 0;
  rows.forEach((row, r) => {
    cols = Math.max(cols, row.length);
    row.forEach((img, c) => {
      assertImage(img, `composeGrid: row ${r} image ${c}`);
      cellH = Math.max(cellH, img.height * scale);
      cellW = Math.max(cellW, img.width * scale);
    });
  });
  const out = solidImage(pad + rows.length * (cellH + pad), pad + cols * (cellW + pad), bgc);
  for (let r = 0; r < rows.length; r++) {
    for (let c = 0; c < rows[r].length; c++) {
      const img = upscaleNearest(rows[r][c], scale);
      blit(out, img, pad + r * (cellH + pad), pad + c * (cellW + pad));
    }
  }
  return out;
}

/** Copies `src` into `dst` with its top-left corner at (top, left), clipped to `dst`. */
export function blit(dst: Image, src: Image, top: number, left: number): void {
  for (let i = 0; i < src.height; i++) {
    const y = top + i;
    if (y < 0 || y >= dst.height) continue;
    for (let j = 0; j < src.width; j++) {
      const x = left + j;
      if (x < 0 || x >= dst.width) continue;
      const s = (i * src.width + j) * 3;
      const d = (y * dst.width + x) * 3;
      dst.data[d] = src.data[s];
      dst.data[d + 1] = src.data[s + 1];
      dst.data[d + 2] = src.data[s + 2];
    }
  }
}
