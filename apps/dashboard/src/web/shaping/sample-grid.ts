/** A sample as the grids need it. */
export interface GridSample {
  prompt: string;
  seed: bigint;
}

/** One row of a same-seed grid: a model and its sample in each column (undefined where it has none). */
export interface GridRow<T extends GridSample> {
  label: string;
  cells: (T | undefined)[];
}

/** Same-seed sample grid: one column per (prompt, seed), one row per model. */
export interface SampleGrid<T extends GridSample> {
  /** Column headers, in first-seen order. */
  columns: GridSample[];
  rows: GridRow<T>[];
}

/**
 * Lines up the evaluation samples of several models by prompt and seed, so each column shows what every
 * checkpoint drew from the same noise. Columns are in the order first seen (the base model's order).
 */
export function sampleGrid<T extends GridSample>(
  models: readonly { label: string; samples: readonly T[] }[],
): SampleGrid<T> {
  const key = (s: GridSample) => `${s.seed}\u0000${s.prompt}`;
  const index = new Map<string, number>();
  const columns: GridSample[] = [];
  for (const m of models) {
    for (const s of m.samples) {
      if (!index.has(key(s))) {
        index.set(key(s), columns.length);
        columns.push({ prompt: s.prompt, seed: s.seed });
      }
    }
  }
  const rows = models.map((m) => {
    const cells: (T | undefined)[] = new Array(columns.length).fill(undefined);
    for (const s of m.samples) cells[index.get(key(s))!] = s;
    return { label: m.label, cells };
  });
  return { columns, rows };
}
