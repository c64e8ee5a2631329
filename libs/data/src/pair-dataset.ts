import { mkdir, open, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { assertImage, type Image, type ImageBatch, imageToRgb8, rgb8ToImage } from "./image.js";

/** Value of `manifest.format` for a pair dataset. */
export const PAIR_FORMAT = "idpo-pairs";
/** Current on-disk version of the pair format. */
export const PAIR_FORMAT_VERSION = 1;
/** First 8 bytes of every shard file. */
const SHARD_MAGIC = Buffer.from("IDPOPAIR", "ascii");
const SHARD_HEADER_BYTES = 16;
const RECORD_HEADER_BYTES = 8;
const MANIFEST = "manifest.json";

/** One shard file listed by a manifest. */
export interface PairShardInfo {
  /** File name inside the dataset directory. */
  file: string;
  /** Records in the shard. */
  count: number;
  /** Size of the shard file in bytes. */
  bytes: number;
}

/** `manifest.json` of a pair dataset directory (written last, so its presence means the dataset is complete). */
export interface PairManifest {
  /** Always "idpo-pairs". */
  format: typeof PAIR_FORMAT;
  /** On-disk version (1). */
  version: number;
  /** Image rows. */
  height: number;
  /** Image columns. */
  width: number;
  /** Always 3 (RGB). */
  channels: 3;
  /** Pixel encoding of records: "rgb8" = raw 8-bit HWC RGB. */
  encoding: "rgb8";
  /** Total records over all shards. */
  count: number;
  /** Where the pairs came from: "shapes", "pickapic", "online", ... */
  source: string;
  /** Seed the dataset was generated from, when it was generated (null otherwise). */
  seed: number | null;
  /** ISO time the dataset was completed. */
  createdAt: string;
  /** Shard files in read order. */
  shards: PairShardInfo[];
  /** Source-specific details (generator config, skipped-row counts, ...). */
  info: Record<string, unknown>;
}

/** A preference pair as read back from disk. */
export interface PairRecord {
  /** The prompt (caption) both images answer. */
  prompt: string;
  /** The preferred image, HWC float in [0, 1]. */
  winner: Image;
  /** The other image. */
  loser: Image;
  /** Reward of the winner when the source has one (shapes oracle), else null. */
  winnerReward: number | null;
  /** Reward of the loser when the source has one, else null. */
  loserReward: number | null;
  /** Per-record details the writer attached (parsed JSON), else null. */
  meta: Record<string, unknown> | null;
}

/** A preference pair to write: images as float images or as raw 8-bit HWC RGB. */
export interface PairRecordInput {
  /** The prompt both images answer. */
  prompt: string;
  /** The preferred image. */
  winner: Image | Uint8Array;
  /** The other image. */
  loser: Image | Uint8Array;
  /** Reward of the winner, if known. */
  winnerReward?: number | null;
  /** Reward of the loser, if known. */
  loserReward?: number | null;
  /** Small JSON-serialisable details kept with the record. */
  meta?: Record<string, unknown> | null;
}

/** Options of {@link PairDatasetWriter.create}. */
export interface PairWriterOptions {
  /** Image rows of every record. */
  height: number;
  /** Image columns of every record. */
  width: number;
  /** Source label written to the manifest. */
  source: string;
  /** Seed written to the manifest (default null). */
  seed?: number | null;
  /** Source details written to the manifest (more can be given to close()). */
  info?: Record<string, unknown>;
  /** Records per shard file (default 4096). */
  shardSize?: number;
  /** Replace an existing dataset in `dir` (default false: refuse). */
  overwrite?: boolean;
}

/**
 * Streams preference pairs to a dataset directory: records are appended to numbered shard files
 * (`pairs-00000.bin`, ...; each written as `.part` and renamed when full), and `manifest.json` is
 * written by {@link close}. Memory use is one write buffer, whatever the number of records.
 *
 * Shard layout (little-endian): 16-byte header = "IDPOPAIR" + u32 version + u32 reserved; then records,
 * each = u32 payload length + u32 CRC-32 of the payload + payload, payload = u32 prompt bytes + UTF-8
 * prompt + f64 winner reward + f64 loser reward (NaN = none) + u32 meta bytes + UTF-8 JSON meta (may be
 * empty) + winner rgb8 (H·W·3 bytes, HWC) + loser rgb8.
 */
export class PairDatasetWriter {
  /** Dataset directory. */
  readonly dir: string;
  private readonly opts: Required<Omit<PairWriterOptions, "info">> & { info: Record<string, unknown> };
  private readonly imageBytes: number;
  private readonly shards: PairShardInfo[] = [];
  private handle: Awaited<ReturnType<typeof open>> | null = null;
  private shardCount = 0;
  private shardBytes = 0;
  private buffer: Buffer;
  private used = 0;
  private total = 0;
  private closed = false;
  private readonly winnerScratch: Uint8Array;
  private readonly loserScratch: Uint8Array;

  private constructor(dir: string, opts: PairWriterOptions) {
    this.dir = dir;
    this.opts = {
      height: opts.height,
      width: opts.width,
      source: opts.source,
      seed: opts.seed ?? null,
      info: { ...(opts.info ?? {}) },
      shardSize: opts.shardSize ?? 4096,
      overwrite: opts.overwrite ?? false,
    } as PairDatasetWriter["opts"];
    this.imageBytes = opts.height * opts.width * 3;
    this.buffer = Buffer.allocUnsafe(Math.max(1 << 20, 4 * this.imageBytes));
    this.winnerScratch = new Uint8Array(this.imageBytes);
    this.loserScratch = new Uint8Array(this.imageBytes);
  }

  /** Creates the directory (refusing one that already holds a dataset unless `overwrite`). */
  static async create(dir: string, opts: PairWriterOptions): Promise<PairDatasetWriter> {
    for (const k of ["height", "width"] as const) {
      const v = opts[k];
      if (!Number.isInteger(v) || v <= 0 || v > 65535)
        throw new Error(`PairDatasetWriter: ${k} must be in 1..65535, got ${v}`);
    }
    if (typeof opts.source !== "string" || opts.source.length === 0) {
      throw new Error("PairDatasetWriter: source must be a non-empty string");
    }
    const shardSize = opts.shardSize ?? 4096;
    if (!Number.isInteger(shardSize) || shardSize <= 0) {
      throw new Error(`PairDatasetWriter: shardSize must be a positive integer, got ${shardSize}`);
    }
    await mkdir(dir, { recursive: true });
    const existing = await readdir(dir);
    const ours = existing.filter((f) => f === MANIFEST || /^pairs-\d{5}\.bin(\.part)?$/.test(f));
    if (ours.length > 0) {
      if (!opts.overwrite) {
        throw new Error(
          `PairDatasetWriter: ${dir} already holds a pair dataset (${ours[0]}); pass overwrite to replace it`,
        );
      }
      for (const f of ours) await rm(join(dir, f), { force: true });
    }
    return new PairDatasetWriter(dir, opts);
  }

  /** Records written so far. */
  get count(): number {
    return this.total;
  }

  /** Appends one record (buffered; flushed as the buffer fills). */
  async write(rec: PairRecordInput): Promise<void> {
    if (this.closed) throw new Error("PairDatasetWriter: write after close");
    if (typeof rec.prompt !== "string")
      throw new Error(`PairDatasetWriter: record ${this.total}: prompt must be a string`);
    const winner = this.pixels(rec.winner, "winner", this.winnerScratch);
    const loser = this.pixels(rec.loser, "loser", this.loserScratch);
    const prompt = Buffer.from(rec.prompt, "utf8");
    const meta = rec.meta == null ? Buffer.alloc(0) : Buffer.from(JSON.stringify(rec.meta), "utf8");
    const payload = 4 + prompt.length + 16 + 4 + meta.length + 2 * this.imageBytes;
    const need = RECORD_HEADER_BYTES + payload;
    if (this.handle === null) await this.openShard();
    if (this.used + need > this.buffer.length) {
      await this.flush();
      if (need > this.buffer.length) this.buffer = Buffer.allocUnsafe(need);
    }
    const b = this.buffer;
    const start = this.used;
    let o = start + RECORD_HEADER_BYTES;
    o = b.writeUInt32LE(prompt.length, o);
    o += prompt.copy(b, o);
    o = b.writeDoubleLE(rec.winnerReward ?? Number.NaN, o);
    o = b.writeDoubleLE(rec.loserReward ?? Number.NaN, o);
    o = b.writeUInt32LE(meta.length, o);
    o += meta.copy(b, o);
    b.set(winner, o);
    o += this.imageBytes;
    b.set(loser, o);
    o += this.imageBytes;
    b.writeUInt32LE(payload, start);
    b.writeUInt32LE(crc32(b.subarray(start + RECORD_HEADER_BYTES, o)), start + 4);
    this.used = o;
    this.shardCount++;
    this.total++;
    if (this.shardCount >= this.opts.shardSize) await this.finishShard();
  }

  /**
   * Flushes, closes the last shard and writes `manifest.json` (atomically, via a rename).
   * `info` is merged into the manifest's info. Returns the manifest.
   */
  async close(info?: Record<string, unknown>): Promise<PairManifest> {
    if (this.closed) throw new Error("PairDatasetWriter: closed twice");
    this.closed = true;
    if (this.handle !== null) await this.finishShard();
    const manifest: PairManifest = {
      format: PAIR_FORMAT,
      version: PAIR_FORMAT_VERSION,
      height: this.opts.height,
      width: this.opts.width,
      channels: 3,
      encoding: "rgb8",
      count: this.total,
      source: this.opts.source,
      seed: this.opts.seed,
      createdAt: new Date().toISOString(),
      shards: this.shards,
      info: { ...this.opts.info, ...(info ?? {}) },
    };
    const tmp = join(this.dir, `${MANIFEST}.part`);
    await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
    await rename(tmp, join(this.dir, MANIFEST));
    return manifest;
  }

  /** Stops writing and deletes what this writer wrote (no manifest is left behind). */
  async abort(): Promise<void> {
    this.closed = true;
    if (this.handle !== null) {
      await this.handle.close();
      this.handle = null;
      await rm(join(this.dir, `${shardName(this.shards.length)}.part`), { force: true });
    }
    for (const s of this.shards) await rm(join(this.dir, s.file), { force: true });
  }

  private pixels(img: Image | Uint8Array, which: string, scratch: Uint8Array): Uint8Array {
    if (img instanceof Uint8Array) {
      if (img.length !== this.imageBytes) {
        throw new Error(
          `PairDatasetWriter: record ${this.total}: ${which} has ${img.length} bytes, expected ${this.imageBytes} ` +
            `(${this.opts.height}x${this.opts.width}x3 rgb8)`,
        );
      }
      return img;
    }
    assertImage(img, `PairDatasetWriter: record ${this.total}: ${which}`);
    if (img.height !== this.opts.height || img.width !== this.opts.width) {
      throw new Error(
        `PairDatasetWriter: record ${this.total}: ${which} is ${img.height}x${img.width}, ` +
          `the dataset is ${this.opts.height}x${this.opts.width}`,
      );
    }
    return imageToRgb8(img, scratch);
  }

  private async openShard(): Promise<void> {
    const name = shardName(this.shards.length);
    this.handle = await open(join(this.dir, `${name}.part`), "w");
    const header = Buffer.alloc(SHARD_HEADER_BYTES);
    SHARD_MAGIC.copy(header, 0);
    header.writeUInt32LE(PAIR_FORMAT_VERSION, 8);
    header.copy(this.buffer, 0);
    this.used = SHARD_HEADER_BYTES;
    this.shardCount = 0;
    this.shardBytes = 0;
  }

  private async flush(): Promise<void> {
    if (this.handle === null || this.used === 0) return;
    let off = 0;
    while (off < this.used) {
      const { bytesWritten } = await this.handle.write(this.buffer, off, this.used - off);
      off += bytesWritten;
    }
    this.shardBytes += this.used;
    this.used = 0;
  }

  private async finishShard(): Promise<void> {
    await this.flush();
    const handle = this.handle;
    if (handle === null) return;
    await handle.sync();
    await handle.close();
    this.handle = null;
    const name = shardName(this.shards.length);
    await rename(join(this.dir, `${name}.part`), join(this.dir, name));
    this.shards.push({ file: name, count: this.shardCount, bytes: this.shardBytes });
  }
}

function shardName(i: number): string {
  return `pairs-${String(i).padStart(5, "0")}.bin`;
}

/** Reads and checks `manifest.json` of a pair dataset directory. */
export async function readPairManifest(dir: string): Promise<PairManifest> {
  let text: string;
  try {
    text = await readFile(join(dir, MANIFEST), "utf8");
  } catch (e) {
    throw new Error(
      `${dir} is not a complete pair dataset: cannot read ${MANIFEST} (${(e as NodeJS.ErrnoException).code ?? e})`,
    );
  }
  let m: PairManifest;
  try {
    m = JSON.parse(text) as PairManifest;
  } catch (e) {
    throw new Error(`${join(dir, MANIFEST)}: invalid JSON (${(e as Error).message})`);
  }
  if (m.format !== PAIR_FORMAT)
    throw new Error(
      `${join(dir, MANIFEST)}: format is ${JSON.stringify(m.format)}, expected "${PAIR_FORMAT}"`,
    );
  if (m.version !== PAIR_FORMAT_VERSION) {
    throw new Error(
      `${join(dir, MANIFEST)}: version ${m.version} is not supported (this reader reads ${PAIR_FORMAT_VERSION})`,
    );
  }
  if (m.encoding !== "rgb8")
    throw new Error(`${join(dir, MANIFEST)}: unknown encoding ${JSON.stringify(m.encoding)}`);
  if (!Number.isInteger(m.height) || !Number.isInteger(m.width) || m.height <= 0 || m.width <= 0) {
    throw new Error(`${join(dir, MANIFEST)}: bad image size ${m.height}x${m.width}`);
  }
  if (!Array.isArray(m.shards)) throw new Error(`${join(dir, MANIFEST)}: shards must be an array`);
  return m;
}

/** Options of {@link readPairs}. */
export interface ReadPairsOptions {
  /** Only these shard indices (default all, in order); lets workers split a dataset. */
  shards?: readonly number[];
  /** Read-buffer size in bytes (default 1 MiB). */
  chunkBytes?: number;
}

/**
 * Streams the records of a pair dataset in order: reads each shard in chunks, never the whole
 * dataset (nor a whole shard) into memory. Checks each record's CRC and each shard's count; a
 * corrupt or truncated shard throws an error naming the file and record.
 */
export async function* readPairs(dir: string, options: ReadPairsOptions = {}): AsyncGenerator<PairRecord> {
  const manifest = await readPairManifest(dir);
  const imageBytes = manifest.height * manifest.width * 3;
  const indices = options.shards ?? manifest.shards.map((_, i) => i);
  const chunkBytes = options.chunkBytes ?? 1 << 20;
  const decoder = new TextDecoder("utf-8", { fatal: true });
  for (const si of indices) {
    const shard = manifest.shards[si];
    if (shard === undefined)
      throw new Error(`readPairs: shard index ${si} out of range (${manifest.shards.length} shards)`);
    const path = join(dir, shard.file);
    const fh = await open(path, "r");
    try {
      let pending: Buffer = Buffer.alloc(0);
      let pos = 0;
      let eof = false;
      let headerChecked = false;
      let n = 0;
      const chunk = Buffer.allocUnsafe(chunkBytes);
      while (true) {
        if (!eof) {
          const { bytesRead } = await fh.read(chunk, 0, chunkBytes, pos);
          pos += bytesRead;
          if (bytesRead === 0) eof = true;
          else
            pending =
              pending.length === 0
                ? Buffer.from(chunk.subarray(0, bytesRead))
                : Buffer.concat([pending, chunk.subarray(0, bytesRead)]);
        }
        let off = 0;
        if (!headerChecked) {
          if (pending.length < SHARD_HEADER_BYTES) {
            if (eof) throw new Error(`${path}: truncated shard header`);
            continue;
          }
          if (!pending.subarray(0, 8).equals(SHARD_MAGIC))
            throw new Error(`${path}: not a pair shard (bad magic)`);
          const v = pending.readUInt32LE(8);
          if (v !== PAIR_FORMAT_VERSION)
            throw new Error(`${path}: shard version ${v}, expected ${PAIR_FORMAT_VERSION}`);
          off = SHARD_HEADER_BYTES;
          headerChecked = true;
        }
        while (pending.length - off >= RECORD_HEADER_BYTES) {
          const len = pending.readUInt32LE(off);
          if (pending.length - off - RECORD_HEADER_BYTES < len) break;
          const crc = pending.readUInt32LE(off + 4);
          const body = pending.subarray(off + RECORD_HEADER_BYTES, off + RECORD_HEADER_BYTES + len);
          if (crc32(body) !== crc)
            throw new Error(`${path}: record ${n} fails its CRC check (corrupt shard)`);
          yield decodeRecord(body, imageBytes, manifest.height, manifest.width, decoder, path, n);
          n++;
          off += RECORD_HEADER_BYTES + len;
        }
        pending = off === 0 ? pending : pending.subarray(off);
        if (eof) {
          if (pending.length > 0)
            throw new Error(`${path}: ${pending.length} trailing bytes after record ${n} (truncated shard)`);
          break;
        }
      }
      if (n !== shard.count) throw new Error(`${path}: holds ${n} records, manifest says ${shard.count}`);
    } finally {
      await fh.close();
    }
  }
}

function decodeRecord(
  body: Buffer,
  imageBytes: number,
  height: number,
  width: number,
  decoder: { decode(input: Uint8Array): string },
  path: string,
  n: number,
): PairRecord {
  let o = 0;
  const promptLen = body.readUInt32LE(o);
  o += 4;
  const prompt = decoder.decode(body.subarray(o, o + promptLen));
  o += promptLen;
  const wr = body.readDoubleLE(o);
  const lr = body.readDoubleLE(o + 8);
  o += 16;
  const metaLen = body.readUInt32LE(o);
  o += 4;
  const meta =
    metaLen === 0
      ? null
      : (JSON.parse(decoder.decode(body.subarray(o, o + metaLen))) as Record<string, unknown>);
  o += metaLen;
  if (body.length - o !== 2 * imageBytes) {
    throw new Error(`${path}: record ${n} has ${body.length - o} image bytes, expected ${2 * imageBytes}`);
  }
  const winner = rgb8ToImage(body.subarray(o, o + imageBytes), height, width);
  const loser = rgb8ToImage(body.subarray(o + imageBytes, o + 2 * imageBytes), height, width);
  return {
    prompt,
    winner,
    loser,
    winnerReward: Number.isNaN(wr) ? null : wr,
    loserReward: Number.isNaN(lr) ? null : lr,
    meta,
  };
}

/** A batch of pairs for training: winners and losers as NHWC batches, aligned with the prompts. */
export interface PairBatch {
  /** Prompts, one per pair. */
  prompts: string[];
  /** Winners, NHWC. */
  winners: ImageBatch;
  /** Losers, NHWC. */
  losers: ImageBatch;
  /** Winner rewards (NaN where the dataset has none). */
  winnerRewards: Float64Array;
  /** Loser rewards (NaN where the dataset has none). */
  loserRewards: Float64Array;
}

/**
 * Groups a stream of pairs into batches of `batchSize` (the last one may be smaller).
 * Works on any record stream: {@link readPairs}, or {@link shuffleStream} over it.
 */
export async function* batchPairs(
  records: AsyncIterable<PairRecord>,
  batchSize: number,
): AsyncGenerator<PairBatch> {
  if (!Number.isInteger(batchSize) || batchSize <= 0)
    throw new Error(`batchPairs: batchSize must be a positive integer, got ${batchSize}`);
  let group: PairRecord[] = [];
  for await (const r of records) {
    group.push(r);
    if (group.length === batchSize) {
      yield toBatch(group);
      group = [];
    }
  }
  if (group.length > 0) yield toBatch(group);
}

function toBatch(group: PairRecord[]): PairBatch {
  const { height, width } = group[0].winner;
  const len = height * width * 3;
  const w = new Float32Array(group.length * len);
  const l = new Float32Array(group.length * len);
  const wr = new Float64Array(group.length);
  const lr = new Float64Array(group.length);
  for (let i = 0; i < group.length; i++) {
    w.set(group[i].winner.data, i * len);
    l.set(group[i].loser.data, i * len);
    wr[i] = group[i].winnerReward ?? Number.NaN;
    lr[i] = group[i].loserReward ?? Number.NaN;
  }
  return {
    prompts: group.map((g) => g.prompt),
    winners: { n: group.length, height, width, channels: 3, data: w },
    losers: { n: group.length, height, width, channels: 3, data: l },
    winnerRewards: wr,
    loserRewards: lr,
  };
}

/**
 * Approximate shuffle of a stream with a reservoir of `bufferSize` items (memory bounded by the
 * buffer): each incoming item replaces a uniformly chosen buffered one, which is emitted.
 * `random` returns uniforms in [0, 1) (e.g. `() => rng.next()` for a seeded order).
 */
export async function* shuffleStream<T>(
  items: AsyncIterable<T>,
  bufferSize: number,
  random: () => number,
): AsyncGenerator<T> {
  if (!Number.isInteger(bufferSize) || bufferSize <= 0)
    throw new Error(`shuffleStream: bufferSize must be a positive integer, got ${bufferSize}`);
  const buf: T[] = [];
  for await (const it of items) {
    if (buf.length < bufferSize) {
      buf.push(it);
      continue;
    }
    const k = Math.floor(random() * bufferSize);
    const out = buf[k];
    buf[k] = it;
    yield out;
  }
  for (let i = buf.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const tmp = buf[i];
    buf[i] = buf[j];
    buf[j] = tmp;
  }
  for (const it of buf) yield it;
}
