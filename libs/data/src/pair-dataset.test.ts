import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataRng } from "./data-rng.js";
import { type Image, rgb8ToImage } from "./image.js";
import {
  batchPairs,
  PairDatasetWriter,
  type PairRecord,
  readPairManifest,
  readPairs,
  shuffleStream,
} from "./pair-dataset.js";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "idpo-pairs-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

function randomRgb8(rng: DataRng, h: number, w: number): Uint8Array {
  const b = new Uint8Array(h * w * 3);
  for (let k = 0; k < b.length; k++) b[k] = rng.int(256);
  return b;
}

async function collect(it: AsyncIterable<PairRecord>): Promise<PairRecord[]> {
  const out: PairRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

describe("pair dataset format", () => {
  it("round-trips records across several shards, exactly at 8 bits, with rewards, meta and unicode prompts", async () => {
    const dir = join(root, "roundtrip");
    const rng = new DataRng(1);
    const h = 5;
    const w = 7;
    const writer = await PairDatasetWriter.create(dir, {
      height: h,
      width: w,
      source: "test",
      seed: 9,
      shardSize: 4,
      info: { a: 1 },
    });
    const expected: {
      prompt: string;
      w: Uint8Array;
      l: Uint8Array;
      wr: number | null;
      lr: number | null;
      meta: unknown;
    }[] = [];
    for (let i = 0; i < 11; i++) {
      const rec = {
        prompt: i % 3 === 0 ? `prompt ${i} — ünïcode ✓` : `p${i}`,
        w: randomRgb8(rng, h, w),
        l: randomRgb8(rng, h, w),
        wr: i % 4 === 0 ? null : rng.next(),
        lr: i % 4 === 0 ? null : rng.next(),
        meta: i % 2 === 0 ? { i, tag: "x" } : null,
      };
      expected.push(rec);
      // Alternate raw bytes and float images as input.
      const winner: Image | Uint8Array = i % 2 === 0 ? rec.w : rgb8ToImage(rec.w, h, w);
      await writer.write({
        prompt: rec.prompt,
        winner,
        loser: rec.l,
        winnerReward: rec.wr,
        loserReward: rec.lr,
        meta: rec.meta as Record<string, unknown> | null,
      });
    }
    expect(writer.count).toBe(11);
    const manifest = await writer.close({ b: 2 });
    expect(manifest.count).toBe(11);
    expect(manifest.shards.map((s) => s.count)).toEqual([4, 4, 3]);
    expect(manifest.info).toEqual({ a: 1, b: 2 });
    expect((await readdir(dir)).sort()).toEqual([
      "manifest.json",
      "pairs-00000.bin",
      "pairs-00001.bin",
      "pairs-00002.bin",
    ]);
    const back = await readPairManifest(dir);
    expect(back).toEqual(manifest);

    // A tiny read buffer forces records to straddle chunk boundaries.
    for (const chunkBytes of [17, 1 << 20]) {
      const recs = await collect(readPairs(dir, { chunkBytes }));
      expect(recs.length).toBe(11);
      recs.forEach((r, i) => {
        const e = expected[i];
        expect(r.prompt).toBe(e.prompt);
        expect(r.winner.height).toBe(h);
        expect(r.winner.width).toBe(w);
        expect(r.winner.data).toEqual(rgb8ToImage(e.w, h, w).data);
        expect(r.loser.data).toEqual(rgb8ToImage(e.l, h, w).data);
        expect(r.winnerReward).toBe(e.wr);
        expect(r.loserReward).toBe(e.lr);
        expect(r.meta).toEqual(e.meta);
      });
    }
    // Shard selection (for splitting a dataset across workers).
    const second = await collect(readPairs(dir, { shards: [1] }));
    expect(second.map((r) => r.prompt)).toEqual(expected.slice(4, 8).map((e) => e.prompt));
  });

  it("quantises float images to the nearest 8-bit level", async () => {
    const dir = join(root, "quant");
    const writer = await PairDatasetWriter.create(dir, { height: 1, width: 2, source: "test" });
    const img: Image = { height: 1, width: 2, data: new Float32Array([0, 1, 0.5, 0.2, -0.3, 1.7]) };
    await writer.write({ prompt: "q", winner: img, loser: img });
    await writer.close();
    const [r] = await collect(readPairs(dir));
    expect(Array.from(r.winner.data).map((v) => Math.round(v * 255))).toEqual([0, 255, 128, 51, 0, 255]);
    expect(r.winnerReward).toBeNull();
  });

  it("detects corruption, truncation and count mismatches with errors naming the file", async () => {
    const dir = join(root, "corrupt");
    const writer = await PairDatasetWriter.create(dir, { height: 2, width: 2, source: "test" });
    for (let i = 0; i < 3; i++)
      await writer.write({ prompt: `p${i}`, winner: new Uint8Array(12).fill(i), loser: new Uint8Array(12) });
    await writer.close();
    const shard = join(dir, "pairs-00000.bin");
    const good = await readFile(shard);
    const flipped = Buffer.from(good);
    flipped[good.length - 5] ^= 0xff;
    await writeFile(shard, flipped);
    await expect(collect(readPairs(dir))).rejects.toThrow(/pairs-00000\.bin: record 2 fails its CRC check/);
    await writeFile(shard, good.subarray(0, good.length - 3));
    await expect(collect(readPairs(dir))).rejects.toThrow(/truncated shard/);
    const manifest = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
    await writeFile(shard, good);
    manifest.shards[0].count = 4;
    await writeFile(join(dir, "manifest.json"), JSON.stringify(manifest));
    await expect(collect(readPairs(dir))).rejects.toThrow(/holds 3 records, manifest says 4/);
    await expect(readPairManifest(join(root, "nothing-here"))).rejects.toThrow(/not a complete pair dataset/);
  });

  it("refuses to overwrite unless asked, rejects wrong-sized images, and abort leaves nothing", async () => {
    const dir = join(root, "guard");
    const w1 = await PairDatasetWriter.create(dir, { height: 2, width: 2, source: "test" });
    await expect(
      w1.write({ prompt: "p", winner: new Uint8Array(11), loser: new Uint8Array(12) }),
    ).rejects.toThrow(/winner has 11 bytes, expected 12/);
    await expect(
      w1.write({
        prompt: "p",
        winner: new Uint8Array(12),
        loser: { height: 3, width: 2, data: new Float32Array(18) },
      }),
    ).rejects.toThrow(/loser is 3x2, the dataset is 2x2/);
    await w1.write({ prompt: "p", winner: new Uint8Array(12), loser: new Uint8Array(12) });
    await w1.close();
    await expect(PairDatasetWriter.create(dir, { height: 2, width: 2, source: "test" })).rejects.toThrow(
      /already holds a pair dataset/,
    );
    const w2 = await PairDatasetWriter.create(dir, { height: 2, width: 2, source: "test", overwrite: true });
    await w2.write({ prompt: "p", winner: new Uint8Array(12), loser: new Uint8Array(12) });
    await w2.abort();
    expect(await readdir(dir)).toEqual([]);
  });

  it("batches pairs into NHWC batches and shuffles a stream into a permutation", async () => {
    const dir = join(root, "batch");
    const writer = await PairDatasetWriter.create(dir, { height: 1, width: 1, source: "test", shardSize: 3 });
    for (let i = 0; i < 7; i++) {
      await writer.write({
        prompt: `p${i}`,
        winner: new Uint8Array([i, 0, 0]),
        loser: new Uint8Array([0, i, 0]),
        winnerReward: i,
        loserReward: -i,
      });
    }
    await writer.close();
    const batches = [];
    for await (const b of batchPairs(readPairs(dir), 3)) batches.push(b);
    expect(batches.map((b) => b.winners.n)).toEqual([3, 3, 1]);
    expect(batches[1].prompts).toEqual(["p3", "p4", "p5"]);
    expect(Array.from(batches[1].winners.data).map((v) => Math.round(v * 255))).toEqual([
      3, 0, 0, 4, 0, 0, 5, 0, 0,
    ]);
    expect(Array.from(batches[1].loserRewards)).toEqual([-3, -4, -5]);
    const rng = new DataRng(4);
    const order: string[] = [];
    for await (const r of shuffleStream(readPairs(dir), 4, () => rng.next())) order.push(r.prompt);
    expect(order.slice().sort()).toEqual(["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    expect(order).not.toEqual(["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
  });
});
