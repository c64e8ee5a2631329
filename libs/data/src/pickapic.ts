import { readdir, stat } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import {
  asyncBufferFromFile,
  type FileMetaData,
  parquetMetadataAsync,
  parquetReadObjects,
  parquetSchema,
} from "hyparquet";
import { compressors } from "hyparquet-compressors";
import { decodeJpeg, type JpegLimits } from "./codecs.js";
import type { Image } from "./image.js";
import { PairDatasetWriter, type PairManifest } from "./pair-dataset.js";
import { centerCropResize, type ResizeMode } from "./resize.js";

/** Columns read from a Pick-a-Pic shard; other columns are never read. */
export const PICKAPIC_COLUMNS = ["caption", "jpg_0", "jpg_1", "label_0", "label_1"] as const;

/** Counters of a Pick-a-Pic read. */
export interface PickAPicStats {
  /** Parquet files opened. */
  files: number;
  /** Row groups read. */
  rowGroups: number;
  /** Rows seen. */
  rows: number;
  /** Pairs produced. */
  pairs: number;
  /** Rows dropped as ties (label_0 = label_1 = 0.5). */
  ties: number;
  /** Rows skipped as corrupt, by reason. */
  skipped: {
    /** A JPEG that does not decode. */
    badJpeg: number;
    /** label_0 or label_1 null or not a number. */
    missingLabel: number;
    /** Labels that are neither {1, 0}, {0, 1} nor a tie. */
    badLabel: number;
    /** Caption missing or empty. */
    missingCaption: number;
    /** jpg_0 or jpg_1 missing. */
    missingImage: number;
  };
}

/** Options of the Pick-a-Pic reader. */
export interface PickAPicOptions {
  /** Output side S: images are centre-cropped to a square and resized to S×S. */
  size: number;
  /** Resampling filter (default "auto": area when shrinking). */
  resize?: ResizeMode;
  /** Limits for decoding untrusted JPEGs. */
  jpeg?: JpegLimits;
  /** Called after each row group with the counters so far. */
  onProgress?: (stats: PickAPicStats, file: string) => void;
  /** Called for each skipped row (file, row index in the file, reason). */
  onSkip?: (file: string, row: number, reason: keyof PickAPicStats["skipped"], detail: string) => void;
}

/** A Pick-a-Pic preference pair after preprocessing. */
export interface PickAPicPair {
  /** The caption. */
  prompt: string;
  /** Preferred image (label 1), S×S. */
  winner: Image;
  /** The other image, S×S. */
  loser: Image;
  /** Source file and row, for tracing. */
  source: { file: string; row: number };
}

/** An empty counter set. */
export function emptyPickAPicStats(): PickAPicStats {
  return {
    files: 0,
    rowGroups: 0,
    rows: 0,
    pairs: 0,
    ties: 0,
    skipped: { badJpeg: 0, missingLabel: 0, badLabel: 0, missingCaption: 0, missingImage: 0 },
  };
}

/**
 * Expands inputs (parquet files, or directories whose `*.parquet` files are taken, sorted by name,
 * not recursively) into a list of files. Throws when an input does not exist or nothing is found.
 */
export async function listParquetFiles(inputs: readonly string[]): Promise<string[]> {
  if (inputs.length === 0)
    throw new Error("no Pick-a-Pic input given (expected parquet files or a directory)");
  const out: string[] = [];
  for (const input of inputs) {
    let st: Awaited<ReturnType<typeof stat>>;
    try {
      st = await stat(input);
    } catch {
      throw new Error(`Pick-a-Pic input ${input} does not exist`);
    }
    if (st.isDirectory()) {
      const names = (await readdir(input)).filter((f) => f.endsWith(".parquet")).sort();
      if (names.length === 0) throw new Error(`Pick-a-Pic input directory ${input} holds no .parquet file`);
      for (const n of names) out.push(resolve(join(input, n)));
    } else out.push(resolve(input));
  }
  return out;
}

/**
 * Streams Pick-a-Pic preference pairs out of parquet shards as published (columns caption, jpg_0,
 * jpg_1, label_0, label_1; others ignored), one row group at a time. The winner is the image whose
 * label is 1; ties (0.5) are dropped; rows with an undecodable JPEG, a missing label or caption
 * are skipped and counted in `stats`, never fatal. A file without the needed columns throws.
 */
export async function* readPickAPicPairs(
  files: readonly string[],
  options: PickAPicOptions,
  stats: PickAPicStats = emptyPickAPicStats(),
): AsyncGenerator<PickAPicPair> {
  if (!Number.isInteger(options.size) || options.size <= 0) {
    throw new Error(`Pick-a-Pic: size must be a positive integer, got ${options.size}`);
  }
  for (const file of files) {
    const buffer = await asyncBufferFromFile(file);
    let metadata: FileMetaData;
    try {
      metadata = await parquetMetadataAsync(buffer);
    } catch (e) {
      throw new Error(`${file}: not a readable parquet file (${(e as Error).message})`);
    }
    const names = parquetSchema(metadata).children.map((c) => c.element.name);
    const missing = PICKAPIC_COLUMNS.filter((c) => !names.includes(c));
    if (missing.length > 0) {
      throw new Error(
        `${file}: missing Pick-a-Pic column(s) ${missing.join(", ")} (has ${names.join(", ")})`,
      );
    }
    stats.files++;
    let rowStart = 0;
    for (const group of metadata.row_groups) {
      const rowEnd = rowStart + Number(group.num_rows);
      const rows = await parquetReadObjects({
        file: buffer,
        metadata,
        columns: [...PICKAPIC_COLUMNS],
        rowStart,
        rowEnd,
        compressors,
        utf8: false,
      });
      for (let r = 0; r < rows.length; r++) {
        stats.rows++;
        const pair = convertRow(rows[r], file, rowStart + r, options, stats);
        if (pair !== null) {
          stats.pairs++;
          yield pair;
        }
      }
      stats.rowGroups++;
      rowStart = rowEnd;
      options.onProgress?.(stats, file);
    }
  }
}

function convertRow(
  row: Record<string, unknown>,
  file: string,
  index: number,
  options: PickAPicOptions,
  stats: PickAPicStats,
): PickAPicPair | null {
  const skip = (reason: keyof PickAPicStats["skipped"], detail: string): null => {
    stats.skipped[reason]++;
    options.onSkip?.(file, index, reason, detail);
    return null;
  };
  const l0 = toNumber(row.label_0);
  const l1 = toNumber(row.label_1);
  if (l0 === null || l1 === null)
    return skip("missingLabel", `label_0=${String(row.label_0)} label_1=${String(row.label_1)}`);
  if (l0 === 0.5 && l1 === 0.5) {
    stats.ties++;
    return null;
  }
  let winnerIdx: 0 | 1;
  if (l0 === 1 && l1 === 0) winnerIdx = 0;
  else if (l0 === 0 && l1 === 1) winnerIdx = 1;
  else return skip("badLabel", `label_0=${l0} label_1=${l1}`);
  const caption = toText(row.caption);
  if (caption === null || caption.trim().length === 0)
    return skip("missingCaption", "empty or missing caption");
  const b0 = toBytes(row.jpg_0);
  const b1 = toBytes(row.jpg_1);
  if (b0 === null || b1 === null) return skip("missingImage", `jpg_${b0 === null ? 0 : 1} missing`);
  let img0: Image;
  let img1: Image;
  try {
    img0 = decodeJpeg(b0, options.jpeg);
  } catch (e) {
    return skip("badJpeg", `jpg_0: ${(e as Error).message}`);
  }
  try {
    img1 = decodeJpeg(b1, options.jpeg);
  } catch (e) {
    return skip("badJpeg", `jpg_1: ${(e as Error).message}`);
  }
  const a = centerCropResize(img0, options.size, options.resize);
  const b = centerCropResize(img1, options.size, options.resize);
  return {
    prompt: caption,
    winner: winnerIdx === 0 ? a : b,
    loser: winnerIdx === 0 ? b : a,
    source: { file, row: index },
  };
}

function toNumber(v: unknown): number | null {
  if (typeof v === "number") return Number.isFinite(v) ? v : null;
  if (typeof v === "bigint") return Number(v);
  return null;
}

const utf8 = new TextDecoder("utf-8");

function toText(v: unknown): string | null {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return utf8.decode(v);
  return null;
}

/** JPEG bytes from a binary column, or from an image struct ({ bytes, path }) as some exports write. */
function toBytes(v: unknown): Uint8Array | null {
  if (v instanceof Uint8Array) return v.length > 0 ? v : null;
  if (v !== null && typeof v === "object" && "bytes" in v) return toBytes((v as { bytes: unknown }).bytes);
  return null;
}

/**
 * Converts Pick-a-Pic parquet shards into a pair dataset directory (the same format as the shapes
 * world, source "pickapic", no rewards). Streaming throughout. The manifest's info holds the counters.
 */
export async function convertPickAPic(
  inputs: readonly string[],
  outDir: string,
  options: PickAPicOptions & { overwrite?: boolean; shardSize?: number },
): Promise<{ manifest: PairManifest; stats: PickAPicStats }> {
  const files = await listParquetFiles(inputs);
  const stats = emptyPickAPicStats();
  const writer = await PairDatasetWriter.create(outDir, {
    height: options.size,
    width: options.size,
    source: "pickapic",
    overwrite: options.overwrite,
    shardSize: options.shardSize,
    info: { inputs: files, resize: options.resize ?? "auto" },
  });
  try {
    for await (const p of readPickAPicPairs(files, options, stats)) {
      await writer.write({
        prompt: p.prompt,
        winner: p.winner,
        loser: p.loser,
        meta: { file: basename(p.source.file), row: p.source.row },
      });
    }
  } catch (e) {
    await writer.abort();
    throw e;
  }
  const manifest = await writer.close({ ...stats, skipped: { ...stats.skipped } });
  return { manifest, stats };
}
