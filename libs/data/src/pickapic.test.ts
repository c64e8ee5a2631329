import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeJpeg } from "./codecs.js";
import { imageToRgb8 } from "./image.js";
import { readPairs } from "./pair-dataset.js";
import { convertPickAPic, listParquetFiles, readPickAPicPairs } from "./pickapic.js";
import { type PickAPicFixtureRow, pickAPicFixtureRows, writePickAPicFixture } from "./pickapic-fixture.js";
import { centerCropResize } from "./resize.js";

let root: string;
let rowsA: PickAPicFixtureRow[];
let rowsB: PickAPicFixtureRow[];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "idpo-pickapic-"));
  await mkdir(join(root, "shards"));
  rowsA = pickAPicFixtureRows(23, 1);
  rowsB = pickAPicFixtureRows(7, 2);
  // Two shards: several row groups with snappy pages, and one uncompressed row group.
  await writePickAPicFixture(join(root, "shards", "train-00000.parquet"), rowsA, { rowGroupSize: 5 });
  await writePickAPicFixture(join(root, "shards", "train-00001.parquet"), rowsB, {
    rowGroupSize: 100,
    codec: "UNCOMPRESSED",
  });
  await writeFile(join(root, "shards", "README.txt"), "not a parquet file");
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const count = (rows: PickAPicFixtureRow[], e: PickAPicFixtureRow["expect"]) =>
  rows.filter((r) => r.expect === e).length;

describe("Pick-a-Pic ingestion", () => {
  it("lists the parquet files of a directory in name order", async () => {
    const files = await listParquetFiles([join(root, "shards")]);
    expect(files.map((f) => f.split("/").at(-1))).toEqual(["train-00000.parquet", "train-00001.parquet"]);
    await expect(listParquetFiles([join(root, "missing")])).rejects.toThrow(/does not exist/);
    await expect(listParquetFiles([root])).rejects.toThrow(/no \.parquet file/);
  });

  it("streams pairs row group by row group: winner = label 1, ties dropped, corrupt rows skipped and counted", async () => {
    const files = await listParquetFiles([join(root, "shards")]);
    const skips: string[] = [];
    const progress: number[] = [];
    const stats = {
      files: 0,
      rowGroups: 0,
      rows: 0,
      pairs: 0,
      ties: 0,
      skipped: { badJpeg: 0, missingLabel: 0, badLabel: 0, missingCaption: 0, missingImage: 0 },
    };
    const pairs = [];
    for await (const p of readPickAPicPairs(
      files,
      {
        size: 12,
        onSkip: (_f, row, reason) => skips.push(`${row}:${reason}`),
        onProgress: (s) => progress.push(s.rowGroups),
      },
      stats,
    )) {
      pairs.push(p);
    }
    const all = [...rowsA, ...rowsB];
    const winners = count(all, "winner0") + count(all, "winner1");
    expect(stats.files).toBe(2);
    expect(stats.rowGroups).toBe(5 + 1);
    expect(progress).toEqual([1, 2, 3, 4, 5, 6]);
    expect(stats.rows).toBe(30);
    expect(stats.pairs).toBe(winners);
    expect(pairs.length).toBe(winners);
    expect(stats.ties).toBe(count(all, "tie"));
    expect(stats.skipped).toEqual({
      badJpeg: count(all, "badJpeg"),
      missingLabel: count(all, "missingLabel"),
      badLabel: count(all, "badLabel"),
      missingCaption: count(all, "missingCaption"),
      missingImage: 0,
    });
    expect(skips.slice(0, 4)).toEqual(["4:badJpeg", "6:missingLabel", "8:missingCaption", "9:badLabel"]);

    // Each pair is its row's images, decoded, centre-cropped and resized, the label-1 image as winner.
    for (const p of pairs) {
      const fileRows = p.source.file.endsWith("00000.parquet") ? rowsA : rowsB;
      const row = fileRows[p.source.row];
      expect(p.prompt).toBe(row.caption);
      const w = row.expect === "winner0" ? row.jpg_0 : row.jpg_1;
      const l = row.expect === "winner0" ? row.jpg_1 : row.jpg_0;
      expect([p.winner.height, p.winner.width]).toEqual([12, 12]);
      expect(p.winner.data).toEqual(centerCropResize(decodeJpeg(w ?? new Uint8Array()), 12).data);
      expect(p.loser.data).toEqual(centerCropResize(decodeJpeg(l ?? new Uint8Array()), 12).data);
    }
  });

  it("converts to the pair dataset format (source pickapic, no rewards, counters in the manifest)", async () => {
    const out = join(root, "out");
    const { manifest, stats } = await convertPickAPic([join(root, "shards", "train-00000.parquet")], out, {
      size: 8,
    });
    expect(manifest.source).toBe("pickapic");
    expect(manifest.count).toBe(stats.pairs);
    expect(manifest.info).toMatchObject({ rows: 23, ties: count(rowsA, "tie") });
    const direct = [];
    for await (const p of readPickAPicPairs([join(root, "shards", "train-00000.parquet")], { size: 8 }))
      direct.push(p);
    let i = 0;
    for await (const r of readPairs(out)) {
      expect(r.prompt).toBe(direct[i].prompt);
      expect(r.winnerReward).toBeNull();
      expect(Array.from(imageToRgb8(r.winner))).toEqual(Array.from(imageToRgb8(direct[i].winner)));
      expect(r.meta).toEqual({ file: "train-00000.parquet", row: direct[i].source.row });
      i++;
    }
    expect(i).toBe(manifest.count);
  });

  it("rejects a file without the Pick-a-Pic columns, naming what is missing", async () => {
    const { parquetWriteBuffer } = await import("hyparquet-writer");
    const bad = join(root, "bad.parquet");
    await writeFile(
      bad,
      new Uint8Array(parquetWriteBuffer({ columnData: [{ name: "caption", data: ["x"], type: "STRING" }] })),
    );
    const it = readPickAPicPairs([bad], { size: 8 });
    await expect(it.next()).rejects.toThrow(/missing Pick-a-Pic column\(s\) jpg_0, jpg_1, label_0, label_1/);
  });
});
