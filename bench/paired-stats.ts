import { type MeanCI, meanCI } from "@idpo/metrics";

/** Per-prompt means of prompt-major per-image values (`k` images per prompt). */
export function perPrompt(values: readonly number[], k: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < values.length; i += k) {
    let s = 0;
    for (let j = 0; j < k; j++) s += values[i + j];
    out.push(s / k);
  }
  return out;
}

/** Mean and 95 % CI over prompts of prompt-major per-image values. */
export function promptCI(values: readonly number[], k: number): MeanCI {
  return meanCI(perPrompt(values, k));
}

/** "0.712 ± 0.013", with a sign when `signed` (for differences). */
export function formatCI(c: { mean: number; halfWidth: number }, signed = false): string {
  return `${signed && c.mean >= 0 ? "+" : ""}${c.mean.toFixed(3)} ± ${c.halfWidth.toFixed(3)}`;
}
