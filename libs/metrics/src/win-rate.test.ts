import { describe, expect, it } from "vitest";
import { matchedWinRate, winRate } from "./win-rate.js";

describe("winRate", () => {
  it("counts wins, ties as half, and losses on paired scores", () => {
    const r = winRate([1, 2, 3, 4], [0, 2, 5, 1]);
    expect([r.wins, r.ties, r.losses, r.n]).toEqual([2, 1, 1, 4]);
    expect(r.winRate).toBe(0.625);
    expect(r.ci.mean).toBe(0.625);
    const tol = winRate([1, 2.005, 3], [1.009, 2, 2.5], 0.01);
    expect([tol.wins, tol.ties, tol.losses]).toEqual([1, 2, 0]);
    expect(tol.winRate).toBeCloseTo(2 / 3, 12);
    expect(() => winRate([1], [1, 2])).toThrow(/paired/);
  });

  it("matches samples by (prompt, seed), or by order within a prompt when seeds are absent", () => {
    const method = [
      { prompt: "a", seed: 1, score: 0.9 },
      { prompt: "a", seed: 2, score: 0.1 },
      { prompt: "b", seed: 1, score: 0.5 },
      { prompt: "c", seed: 7, score: 0.5 },
    ];
    const base = [
      { prompt: "a", seed: 2, score: 0.2 },
      { prompt: "a", seed: 1, score: 0.3 },
      { prompt: "b", seed: 1, score: 0.5 },
    ];
    const r = matchedWinRate(method, base);
    // a/1: 0.9 > 0.3 win; a/2: 0.1 < 0.2 loss; b/1: tie; c/7 unmatched.
    expect([r.wins, r.losses, r.ties, r.matched]).toEqual([1, 1, 1, 3]);
    expect(r.winRate).toBe(0.5);
    const byOrder = matchedWinRate(
      [
        { prompt: "x", score: 1 },
        { prompt: "x", score: 0 },
      ],
      [
        { prompt: "x", score: 0.5 },
        { prompt: "x", score: 0.5 },
      ],
    );
    expect([byOrder.wins, byOrder.losses]).toEqual([1, 1]);
    expect(() => matchedWinRate([{ prompt: "q", seed: 1, score: 1 }], base)).toThrow(/no sample matches/);
  });
});
