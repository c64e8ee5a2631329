/**
 * A confidence band as two stacked series, the form line charts draw bands in: an invisible base at the
 * lower end and the band's width stacked on it (null where either end is missing).
 */
export function bandSeries(
  low: readonly (number | null)[],
  high: readonly (number | null)[],
): { base: (number | null)[]; width: (number | null)[] } {
  if (low.length !== high.length)
    throw new Error(`bandSeries: ${low.length} lower ends but ${high.length} upper`);
  const width = high.map((h, i) => {
    const l = low[i];
    if (h === null || l === null) return null;
    if (h < l) throw new Error(`bandSeries: point ${i} has its upper end ${h} below its lower end ${l}`);
    return h - l;
  });
  return { base: low.map((l, i) => (width[i] === null ? null : l)), width };
}
