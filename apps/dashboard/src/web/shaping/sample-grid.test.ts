import { describe, expect, it } from "vitest";
import { sampleGrid } from "./sample-grid.js";

describe("sampleGrid", () => {
  it("puts each model's sample of the same prompt and seed in the same column", () => {
    const s = (prompt: string, seed: number, id: string) => ({ prompt, seed: BigInt(seed), id });
    const grid = sampleGrid([
      { label: "base", samples: [s("a", 1, "b1"), s("a", 2, "b2"), s("b", 1, "b3")] },
      { label: "iter 1", samples: [s("b", 1, "i3"), s("a", 1, "i1")] },
    ]);
    expect(grid.columns).toEqual([
      { prompt: "a", seed: 1n },
      { prompt: "a", seed: 2n },
      { prompt: "b", seed: 1n },
    ]);
    expect(grid.rows.map((r) => r.label)).toEqual(["base", "iter 1"]);
    expect(grid.rows[0].cells.map((c) => c?.id)).toEqual(["b1", "b2", "b3"]);
    expect(grid.rows[1].cells.map((c) => c?.id)).toEqual(["i1", undefined, "i3"]);
  });
});
