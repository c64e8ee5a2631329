import { describe, expect, it } from "vitest";
import { DataRng } from "./data-rng.js";

describe("DataRng", () => {
  it("is deterministic per seed and differs across nearby seeds", () => {
    const a = new DataRng(42);
    const b = new DataRng(42);
    const c = new DataRng(43);
    const sa = Array.from({ length: 20 }, () => a.next());
    const sb = Array.from({ length: 20 }, () => b.next());
    const sc = Array.from({ length: 20 }, () => c.next());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
    for (const v of sa) expect(v >= 0 && v < 1).toBe(true);
  });

  it("has uniform moments close to 1/2 and 1/12", () => {
    const r = new DataRng(7);
    const n = 200_000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const v = r.next();
      s += v;
      s2 += v * v;
    }
    const mean = s / n;
    expect(Math.abs(mean - 0.5)).toBeLessThan(0.005);
    expect(Math.abs(s2 / n - mean * mean - 1 / 12)).toBeLessThan(0.002);
  });

  it("draws normals with the asked mean and std (Box-Muller)", () => {
    const r = new DataRng(3);
    const n = 200_000;
    let s = 0;
    let s2 = 0;
    let beyond2 = 0;
    for (let i = 0; i < n; i++) {
      const v = r.normal(1, 2);
      s += v;
      s2 += v * v;
      if (Math.abs(v - 1) > 4) beyond2++;
    }
    const mean = s / n;
    expect(Math.abs(mean - 1)).toBeLessThan(0.02);
    expect(Math.abs(Math.sqrt(s2 / n - mean * mean) - 2)).toBeLessThan(0.02);
    // P(|Z| > 2) = 0.0455 for a standard normal.
    expect(Math.abs(beyond2 / n - 0.0455)).toBeLessThan(0.003);
  });

  it("int, choice and shuffle stay in range and shuffle is a permutation", () => {
    const r = new DataRng(9);
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[r.int(3)]++;
    for (const c of counts) expect(Math.abs(c - 10_000)).toBeLessThan(400);
    const items = Array.from({ length: 50 }, (_, i) => i);
    const shuffled = r.shuffle(items.slice());
    expect(shuffled).not.toEqual(items);
    expect(shuffled.slice().sort((x, y) => x - y)).toEqual(items);
    expect(() => r.int(0)).toThrow(/positive integer/);
    expect(() => r.choice([])).toThrow(/empty/);
    expect(() => new DataRng(Number.NaN)).toThrow(/finite/);
  });
});
