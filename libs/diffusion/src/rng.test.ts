import { describe, expect, it } from "vitest";
import { DataOrder } from "./data-order.js";
import { Rng } from "./rng.js";

describe("Rng", () => {
  it("is deterministic per (seed, stream) and differs across them", () => {
    const a = new Rng(42).normals(16);
    const b = new Rng(42).normals(16);
    const c = new Rng(43).normals(16);
    const d = new Rng(42, 1).normals(16);
    expect([...a]).toEqual([...b]);
    expect([...a]).not.toEqual([...c]);
    expect([...a]).not.toEqual([...d]);
    expect([...new Rng(2 ** 40 + 7).normals(4)]).not.toEqual([...new Rng(7).normals(4)]);
  });

  it("draws standard normals and uniforms with the right moments", () => {
    const r = new Rng(1);
    const n = 200_000;
    let s = 0;
    let s2 = 0;
    for (let i = 0; i < n; i++) {
      const x = r.normal();
      s += x;
      s2 += x * x;
    }
    expect(Math.abs(s / n)).toBeLessThan(0.01);
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.01);
    let u = 0;
    for (let i = 0; i < n; i++) u += r.next();
    expect(Math.abs(u / n - 0.5)).toBeLessThan(0.005);
  });

  it("rejects seeds that are not non-negative safe integers", () => {
    expect(() => new Rng(-1)).toThrow(/seed/);
    expect(() => new Rng(1.5)).toThrow(/seed/);
  });

  it("gives permutations", () => {
    const p = [...new Rng(3).permutation(50)].sort((x, y) => x - y);
    expect(p).toEqual(Array.from({ length: 50 }, (_, i) => i));
  });
});

describe("DataOrder", () => {
  it("visits every example once per epoch and is resumable from any step", () => {
    const order = new DataOrder(10, 7);
    const seen: number[] = [];
    for (let s = 0; s < 5; s++) seen.push(...order.batch(s, 2));
    expect([...seen].sort((a, b) => a - b)).toEqual(Array.from({ length: 10 }, (_, i) => i));
    const fresh = new DataOrder(10, 7);
    expect(fresh.batch(3, 2)).toEqual(order.batch(3, 2));
    // Epoch 2 is a different permutation from epoch 1.
    expect(order.batch(5, 10)).not.toEqual(order.batch(0, 10));
    expect(new DataOrder(10, 8).batch(0, 10)).not.toEqual(order.batch(0, 10));
  });
});
