import { describe, expect, it } from "vitest";
import { histogram, textHistogram } from "./histogram.js";

describe("histogram", () => {
  it("counts values into equal bins, the maximum into the last bin", () => {
    const h = histogram([0, 0.1, 0.25, 0.5, 0.99, 1, 1.2, -0.1, Number.NaN], 4, 0, 1);
    expect(h.edges).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(h.counts).toEqual([2, 1, 1, 2]);
    expect([h.under, h.over, h.skipped]).toEqual([1, 1, 1]);
    expect(() => histogram([1], 0, 0, 1)).toThrow(/bins/);
  });

  it("prints one line per bin with bars scaled to the largest count", () => {
    const text = textHistogram(
      [
        { label: "winners", values: [0.9, 0.95, 0.8, 0.85] },
        { label: "losers", values: [0.1, 0.6] },
      ],
      { bins: 2, barWidth: 10 },
    );
    const lines = text.split("\n");
    expect(lines[0]).toMatch(/^bin\s+winners \(n=4\)\s+losers \(n=2\)$/);
    expect(lines[1]).toBe(
      `${"[0.00, 0.50)".padEnd(13)}  ${" ".repeat(10)} 0  ${"#".repeat(3)}${" ".repeat(7)} 1`,
    );
    expect(lines[2]).toBe(
      `${"[0.50, 1.00]".padEnd(13)}  ${"#".repeat(10)} 4  ${"#".repeat(3)}${" ".repeat(7)} 1`,
    );
  });
});
