import type { PairRecord } from "@idpo/data";
import { describe, expect, it } from "vitest";
import { type Example, ExampleStream, stackExamples, takeExamples } from "./example-stream.js";
import type { PairSource } from "./pair-sources.js";

/** A source of `count` 2×2 pairs whose pixels encode (source, pair, winner/loser). */
function source(id: number, count: number): PairSource {
  const img = (v: number) => ({ height: 2, width: 2, data: new Float32Array(12).fill(v) });
  return {
    uri: `mem://${id}`,
    count,
    size: 2,
    records: async function* () {
      for (let i = 0; i < count; i++) {
        const r: PairRecord = {
          prompt: `p${id}-${i}`,
          winner: img((id * 100 + i) / 1000),
          loser: img((id * 100 + i) / 1000 + 0.5),
          winnerReward: null,
          loserReward: null,
          meta: null,
        };
        yield r;
      }
    },
  };
}

async function take(stream: ExampleStream, from: number, n: number): Promise<Example[]> {
  const it = stream.from(from)[Symbol.asyncIterator]();
  const out = await takeExamples(it, n);
  await it.return?.(undefined);
  return out;
}

describe("ExampleStream", () => {
  it("each epoch is a permutation of the dataset, different per epoch, fixed by the seed", async () => {
    const s = new ExampleStream([source(1, 5), source(2, 4)], "pairs", { seed: 7 });
    expect(s.size).toBe(9);
    const two = await take(s, 0, 18);
    const e0 = two.slice(0, 9).map((e) => e.index);
    const e1 = two.slice(9).map((e) => e.index);
    expect([...e0].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...e1].sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8]);
    expect(e0).not.toEqual(e1);
    const again = await take(new ExampleStream([source(1, 5), source(2, 4)], "pairs", { seed: 7 }), 0, 9);
    expect(again.map((e) => e.index)).toEqual(e0);
    const other = await take(new ExampleStream([source(1, 5), source(2, 4)], "pairs", { seed: 8 }), 0, 9);
    expect(other.map((e) => e.index)).not.toEqual(e0);
    // Index i of the concatenated sources is record i - 5 of the second source when i ≥ 5.
    const ex = two.find((e) => e.index === 6)!;
    expect(ex.prompt).toBe("p2-1");
    expect(ex.loser!.data[0]).toBeCloseTo(0.201 + 0.5, 6);
  });

  it("resumes exactly: from(p) is the stream from 0 without its first p examples, across epochs", async () => {
    const s = new ExampleStream([source(1, 3), source(2, 4)], "images", { seed: 3 });
    expect(s.size).toBe(14);
    const all = await take(s, 0, 40);
    for (const p of [1, 13, 14, 15, 29]) {
      const tail = await take(s, p, 40 - p);
      expect(tail.map((e) => e.index)).toEqual(all.slice(p).map((e) => e.index));
    }
  });

  it("a small shuffle buffer still yields every example once per epoch and resumes exactly", async () => {
    // 2×2×3 floats per image: a buffer of ~3 examples.
    const s = new ExampleStream([source(1, 10)], "winners", { seed: 1, shuffleBufferBytes: 3 * (48 + 256) });
    const all = await take(s, 0, 20);
    expect(
      all
        .slice(0, 10)
        .map((e) => e.index)
        .sort((a, b) => a - b),
    ).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const tail = await take(s, 12, 8);
    expect(tail.map((e) => e.index)).toEqual(all.slice(12).map((e) => e.index));
  });

  it("'images' yields winner and loser of every pair with their prompt; batches stack in order", async () => {
    const s = new ExampleStream([source(4, 2)], "images", { seed: 1 });
    const ep = await take(s, 0, 4);
    const byIndex = new Map(ep.map((e) => [e.index, e]));
    expect(byIndex.get(2)!.prompt).toBe("p4-1");
    expect(byIndex.get(2)!.image.data[0]).toBeCloseTo(0.401, 6);
    expect(byIndex.get(3)!.image.data[0]).toBeCloseTo(0.901, 6);
    const pairs = await take(new ExampleStream([source(4, 2)], "pairs", { seed: 1 }), 0, 2);
    const b = stackExamples(pairs, "pairs");
    expect(b.images.n).toBe(2);
    expect(b.losers!.n).toBe(2);
    expect(b.prompts).toEqual(pairs.map((e) => e.prompt));
    expect(b.losers!.data[12]).toBeCloseTo(pairs[1].loser!.data[0], 6);
  });
});
