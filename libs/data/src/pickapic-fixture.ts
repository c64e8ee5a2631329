import { writeFile } from "node:fs/promises";
import { encodeJpeg } from "./codecs.js";
import { DataRng } from "./data-rng.js";
import { cropImage } from "./resize.js";
import { SHAPES } from "./shapes-grammar.js";
import { renderShape } from "./shapes-render.js";

/** One row of a Pick-a-Pic fixture, as written. */
export interface PickAPicFixtureRow {
  /** Caption (null = missing). */
  caption: string | null;
  /** JPEG bytes of image 0 (null = missing). */
  jpg_0: Uint8Array | null;
  /** JPEG bytes of image 1 (null = missing). */
  jpg_1: Uint8Array | null;
  /** Label of image 0 (null = missing). */
  label_0: number | null;
  /** Label of image 1 (null = missing). */
  label_1: number | null;
  /** What a correct reader must do with the row. */
  expect: "winner0" | "winner1" | "tie" | "badJpeg" | "missingLabel" | "badLabel" | "missingCaption";
}

/**
 * Rows of a small synthetic dataset in the Pick-a-Pic schema, deterministic from `seed`: non-square
 * JPEGs (so the centre crop matters) of a shape on a background, two different ones per row, labels
 * in every published form, plus the corrupt cases a reader must skip: an undecodable JPEG, missing labels, a caption of null,
 * labels that are not a preference. Row i's `expect` says what should happen to it.
 */
export function pickAPicFixtureRows(count: number, seed = 1): PickAPicFixtureRow[] {
  const rng = new DataRng(seed);
  const kinds: PickAPicFixtureRow["expect"][] = [
    "winner0",
    "winner1",
    "tie",
    "winner1",
    "badJpeg",
    "winner0",
    "missingLabel",
    "winner1",
    "missingCaption",
    "badLabel",
  ];
  // jpeg-js builds its tables on every encode (~0.25 s), so rows draw from a small pool of distinct
  // JPEGs; within a row the two images always differ, so a swapped winner is caught.
  const pool: Uint8Array[] = [];
  for (let k = 0; k < 4; k++) {
    const h = 24 + rng.int(16);
    const w = 24 + rng.int(24) + (k === 0 ? 8 : 0);
    const side = Math.max(h, w);
    const img = renderShape(
      {
        shape: SHAPES[k % SHAPES.length],
        cx: 0.5,
        cy: 0.5,
        radius: 0.2 + 0.1 * rng.next(),
        color: [rng.next(), rng.next(), rng.next()],
        bg: [rng.next(), rng.next(), rng.next()],
      },
      side,
    );
    pool.push(new Uint8Array(encodeJpeg(cropImage(img, (side - h) >> 1, (side - w) >> 1, h, w), 90)));
  }
  const rows: PickAPicFixtureRow[] = [];
  for (let i = 0; i < count; i++) {
    const expect = kinds[i % kinds.length];
    const first = rng.int(pool.length);
    const second = (first + 1 + rng.int(pool.length - 1)) % pool.length;
    const row: PickAPicFixtureRow = {
      caption: `fixture caption ${i}: a picture of something`,
      jpg_0: pool[first],
      jpg_1: pool[second],
      label_0: 1,
      label_1: 0,
      expect,
    };
    if (expect === "winner1") {
      row.label_0 = 0;
      row.label_1 = 1;
    } else if (expect === "tie") {
      row.label_0 = 0.5;
      row.label_1 = 0.5;
    } else if (expect === "badJpeg") {
      // A JPEG cut short after its header: a real-world corruption (truncated download).
      row.jpg_1 = row.jpg_1 === null ? null : row.jpg_1.slice(0, 40);
    } else if (expect === "missingLabel") {
      row.label_0 = null;
    } else if (expect === "missingCaption") {
      row.caption = null;
    } else if (expect === "badLabel") {
      row.label_0 = 1;
      row.label_1 = 1;
    }
    rows.push(row);
  }
  return rows;
}

/**
 * Writes fixture rows as a parquet file in the published Pick-a-Pic schema (caption STRING, jpg_0 and
 * jpg_1 BYTE_ARRAY, label_0 and label_1 DOUBLE, all nullable, plus unrelated columns `ranking_id`
 * INT64 and `best_image_uid` STRING that a reader must ignore), `rowGroupSize` rows per row group.
 * Needs the dev dependency hyparquet-writer (imported only when called).
 */
export async function writePickAPicFixture(
  path: string,
  rows: readonly PickAPicFixtureRow[],
  options: { rowGroupSize?: number; codec?: "SNAPPY" | "UNCOMPRESSED" } = {},
): Promise<void> {
  const { parquetWriteBuffer } = await import("hyparquet-writer");
  const buf = parquetWriteBuffer({
    columnData: [
      { name: "ranking_id", data: rows.map((_, i) => BigInt(1000 + i)), type: "INT64" },
      { name: "caption", data: rows.map((r) => r.caption), type: "STRING" },
      { name: "jpg_0", data: rows.map((r) => r.jpg_0), type: "BYTE_ARRAY" },
      { name: "jpg_1", data: rows.map((r) => r.jpg_1), type: "BYTE_ARRAY" },
      { name: "label_0", data: rows.map((r) => r.label_0), type: "DOUBLE" },
      { name: "label_1", data: rows.map((r) => r.label_1), type: "DOUBLE" },
      { name: "best_image_uid", data: rows.map((_, i) => `uid-${i}`), type: "STRING" },
    ],
    rowGroupSize: options.rowGroupSize ?? 4,
    codec: options.codec ?? "SNAPPY",
  });
  await writeFile(path, new Uint8Array(buf));
}
