import { spawnSync } from "node:child_process";
import { crc32 } from "node:zlib";
import type { Image } from "@idpo/data";
import { batchPairs } from "@idpo/data";
import { describe, expect, it } from "vitest";
import {
  decodePairShard,
  encodePairShard,
  float16BitsToFloat32,
  float32ToFloat16Bits,
  type PairShardInput,
  pairShardArtifact,
  pairShardRecords,
} from "./pair-shard.js";

function image(h: number, w: number, f: (k: number) => number): Image {
  const data = new Float32Array(h * w * 3);
  for (let k = 0; k < data.length; k++) data[k] = f(k);
  return { height: h, width: w, data };
}

function shard(dtype?: "uint8" | "float16" | "float32"): PairShardInput {
  return {
    height: 2,
    width: 3,
    dtype,
    info: { runId: "r1", iteration: 2, shardIndex: 5 },
    records: [
      {
        prompt: "a small red circle on a black background",
        winner: image(2, 3, (k) => k / 17),
        loser: image(2, 3, (k) => 1 - k / 17),
        meta: { seed: 7 },
      },
      {
        prompt: "ünïcödé",
        winner: image(2, 3, () => 0.25),
        loser: image(2, 3, () => 0.75),
        winnerReward: 0.9,
        loserReward: 0.4,
      },
    ],
  };
}

const hasNumpy = spawnSync("/usr/bin/python3", ["-c", "import numpy"], { stdio: "ignore" }).status === 0;

describe("float16 conversion", () => {
  it("matches hand-computed bit patterns, including rounding to even, subnormals and overflow", () => {
    const cases: [number, number][] = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [0.5, 0x3800],
      [1 / 3, 0x3555],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, Number.NaN], // tie above the largest finite half rounds to even: overflow to Inf
      [2 ** -24, 0x0001],
      [2 ** -25, 0x0000], // exact tie between 0 and the smallest subnormal → even (0)
      [1.5 * 2 ** -25, 0x0001],
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // tie → even mantissa
      [1 + 3 * 2 ** -11, 0x3c02], // tie → even mantissa (up)
    ];
    for (const [v, bits] of cases) {
      if (Number.isNaN(bits)) expect(float32ToFloat16Bits(v)).toBe(0x7c00);
      else expect(float32ToFloat16Bits(v), `f16(${v})`).toBe(bits);
    }
    expect(float16BitsToFloat32(0x3555)).toBeCloseTo(0.333251953125, 12);
    expect(float16BitsToFloat32(0x0001)).toBe(2 ** -24);
    expect(float16BitsToFloat32(0x7c00)).toBe(Number.POSITIVE_INFINITY);
    expect(Number.isNaN(float16BitsToFloat32(0x7e00))).toBe(true);
  });

  it.skipIf(!hasNumpy)("agrees with numpy's float16 on 2000 values in [0, 1]", () => {
    const values: number[] = [];
    for (let i = 0; i < 2000; i++) values.push(Math.fround(((i * 7919) % 2000) / 1999 + (i % 3) * 1e-5) % 1);
    const py = spawnSync(
      "/usr/bin/python3",
      [
        "-c",
        "import sys,json,numpy as np; v=np.array(json.load(sys.stdin),dtype=np.float32); print(json.dumps(v.astype(np.float16).view(np.uint16).tolist()))",
      ],
      { input: JSON.stringify(values), encoding: "utf8" },
    );
    expect(py.status).toBe(0);
    const want = JSON.parse(py.stdout) as number[];
    for (let i = 0; i < values.length; i++)
      expect(float32ToFloat16Bits(values[i]), `value ${values[i]}`).toBe(want[i]);
  });
});

describe("pair shards", () => {
  it("names shard artifacts as the mesh plan says", () => {
    expect(pairShardArtifact("run-1", 2, 5)).toBe("runs/run-1/iter-2/shard-5.pairs");
    expect(() => pairShardArtifact("a.b", 1, 0)).toThrow(/run id/);
    expect(() => pairShardArtifact("r", -1, 0)).toThrow(/iteration/);
  });

  it("round-trips float32 exactly and keeps prompts, rewards, meta and info", () => {
    const input = shard("float32");
    const out = decodePairShard(encodePairShard(input));
    expect(out).toMatchObject({ version: 1, dtype: "float32", height: 2, width: 3, info: input.info });
    expect(out.records).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      expect(out.records[i].prompt).toBe(input.records[i].prompt);
      expect(Array.from(out.records[i].winner.data)).toEqual(Array.from(input.records[i].winner.data));
      expect(Array.from(out.records[i].loser.data)).toEqual(Array.from(input.records[i].loser.data));
    }
    expect(out.records[0]).toMatchObject({ winnerReward: null, loserReward: null, meta: { seed: 7 } });
    expect(out.records[1]).toMatchObject({ winnerReward: 0.9, loserReward: 0.4, meta: null });
  });

  it("quantises uint8 like an 8-bit store (round half up) and float16 to within half an ulp", () => {
    const input = shard();
    const u8 = decodePairShard(encodePairShard(input));
    expect(u8.dtype).toBe("uint8");
    const w = input.records[0].winner.data;
    for (let k = 0; k < w.length; k++)
      expect(u8.records[0].winner.data[k]).toBeCloseTo(Math.floor(w[k] * 255 + 0.5) / 255, 6);
    const f16 = decodePairShard(encodePairShard(shard("float16")));
    for (let k = 0; k < w.length; k++)
      expect(Math.abs(f16.records[0].winner.data[k] - w[k])).toBeLessThanOrEqual(2 ** -12);
  });

  it("has the documented layout: header fields, then CRC-checked records", () => {
    const bytes = encodePairShard(shard("uint8"));
    const view = new DataView(bytes.buffer, bytes.byteOffset);
    expect(new TextDecoder().decode(bytes.subarray(0, 8))).toBe("IDPOSHRD");
    expect([1, 1, 2, 3, 3, 2].map((_, i) => view.getUint32(8 + 4 * i, true))).toEqual([1, 1, 2, 3, 3, 2]);
    const infoLen = view.getUint32(32, true);
    const r0 = 36 + infoLen;
    const len = view.getUint32(r0, true);
    expect(view.getUint32(r0 + 4, true)).toBe(crc32(bytes.subarray(r0 + 8, r0 + 8 + len)));
    const promptLen = view.getUint32(r0 + 8, true);
    expect(new TextDecoder().decode(bytes.subarray(r0 + 12, r0 + 12 + promptLen))).toBe(
      shard().records[0].prompt,
    );
    // prompt + 2 rewards + meta length + meta + 2 images of 18 bytes
    expect(len).toBe(4 + promptLen + 16 + 4 + JSON.stringify({ seed: 7 }).length + 36);
  });

  it("feeds @idpo/data's batchPairs", async () => {
    const s = decodePairShard(encodePairShard(shard("float32")));
    const batches = [];
    for await (const b of batchPairs(pairShardRecords(s), 2)) batches.push(b);
    expect(batches).toHaveLength(1);
    expect(batches[0].prompts).toEqual(s.records.map((r) => r.prompt));
    expect(batches[0].winners.n).toBe(2);
  });

  it("encodes an empty shard", () => {
    const s = decodePairShard(encodePairShard({ height: 4, width: 4, records: [] }));
    expect(s.records).toEqual([]);
    expect(s.info).toEqual({});
  });

  it("refuses malformed input with messages naming the part", () => {
    const bad = shard();
    expect(() =>
      encodePairShard({ ...bad, records: [{ ...bad.records[0], winner: image(3, 3, () => 0) }] }),
    ).toThrow(/records\[0\]\.winner is 3x3/);
    expect(() =>
      encodePairShard({ ...bad, records: [{ ...bad.records[0], loser: image(2, 3, () => Number.NaN) }] }),
    ).toThrow(/records\[0\]\.loser: value NaN/);
    expect(() => encodePairShard({ ...bad, height: 0 })).toThrow(/height/);
    expect(() => encodePairShard({ ...bad, dtype: "int8" as never })).toThrow(/dtype/);
  });

  it("rejects corrupt, truncated or inconsistent blobs", () => {
    const good = encodePairShard(shard("float32"));
    expect(() => decodePairShard(good.subarray(0, 10))).toThrow(/header/);
    const magic = good.slice();
    magic[0] = 0;
    expect(() => decodePairShard(magic)).toThrow(/bad magic/);
    const version = good.slice();
    new DataView(version.buffer).setUint32(8, 9, true);
    expect(() => decodePairShard(version)).toThrow(/version 9/);
    const dtype = good.slice();
    new DataView(dtype.buffer).setUint32(12, 7, true);
    expect(() => decodePairShard(dtype)).toThrow(/dtype code 7/);
    const count = good.slice();
    new DataView(count.buffer).setUint32(28, 3, true);
    expect(() => decodePairShard(count)).toThrow(/3 records/);
    const fewer = good.slice();
    new DataView(fewer.buffer).setUint32(28, 1, true);
    expect(() => decodePairShard(fewer)).toThrow(/trailing bytes/);
    const flipped = good.slice();
    flipped[flipped.length - 1] ^= 0xff;
    expect(() => decodePairShard(flipped)).toThrow(/record 1: fails its CRC/);
    expect(() => decodePairShard(good.subarray(0, good.length - 5))).toThrow(/record 1/);
    // A consistent record (valid CRC) whose pixel is out of range.
    const range = encodePairShard({ ...shard("float32"), records: [shard("float32").records[0]] });
    const v = new DataView(range.buffer);
    const r0 = 36 + v.getUint32(32, true);
    const len = v.getUint32(r0, true);
    v.setFloat32(r0 + 8 + len - 4, 2, true);
    v.setUint32(r0 + 4, crc32(range.subarray(r0 + 8, r0 + 8 + len)), true);
    expect(() => decodePairShard(range)).toThrow(/record 0 loser: pixel value 2/);
  });
});
