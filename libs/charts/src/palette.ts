/** Series colors, in order: the dashboard's and the reports' (a method keeps its color across figures). */
export const PALETTE: readonly string[] = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#495057"];

/** Opacity of a confidence band's fill. */
export const BAND_OPACITY = 0.18;

/** Opacity of each band where more than two overlap (so the lines under them stay readable). */
export const CROWDED_BAND_OPACITY = 0.1;

/** The color of series `i` (the palette repeats past its end). */
export function seriesColor(i: number): string {
  return PALETTE[i % PALETTE.length];
}
