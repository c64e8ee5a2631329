import { describe, expect, it } from "vitest";
import { appendHistory } from "./metrics-history.js";

describe("appendHistory", () => {
  it("appends in step order and replaces points of steps run again after a resume", () => {
    let h = appendHistory([], 10, { loss: 3 });
    h = appendHistory(h, 20, { loss: 2 });
    h = appendHistory(h, 30, { loss: 1 });
    expect(h.map((p) => [p.step, p.metrics.loss])).toEqual([
      [10, 3],
      [20, 2],
      [30, 1],
    ]);
    // Resumed from the checkpoint at step 10: step 20 is trained again and its new metrics replace both later points.
    h = appendHistory(h, 20, { loss: 2.5 });
    expect(h.map((p) => [p.step, p.metrics.loss])).toEqual([
      [10, 3],
      [20, 2.5],
    ]);
  });

  it("halves the density past the limit, keeping the newest point and the whole span", () => {
    let h = appendHistory([], 1, { loss: 1 }, 4);
    for (let s = 2; s <= 5; s++) h = appendHistory(h, s, { loss: s }, 4);
    // 5 points > 4: keep every other counting back from the newest: 1, 3, 5.
    expect(h.map((p) => p.step)).toEqual([1, 3, 5]);
    h = appendHistory(h, 6, { loss: 6 }, 4);
    expect(h.map((p) => p.step)).toEqual([1, 3, 5, 6]);
    h = appendHistory(h, 7, { loss: 7 }, 4);
    expect(h.map((p) => p.step)).toEqual([1, 5, 7]);
  });

  it("copies the metrics, so later changes of the caller's object do not rewrite the curve", () => {
    const m = { loss: 1 };
    const h = appendHistory([], 1, m);
    m.loss = 9;
    expect(h[0].metrics.loss).toBe(1);
  });
});
