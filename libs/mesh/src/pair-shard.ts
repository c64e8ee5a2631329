import { crc32 } from "node:zlib";
import type { Image, PairRecord } from "@idpo/data";

/**
 * Online pair shards: the one binary blob a generator stores per PairShardTask (artifact
 * `runs/<run>/iter-<k>/shard-<i>.pairs`) and the trainer reads back.
 *
 * Layout (little-endian):
 *   header: "IDPOSHRD" (8 bytes) + u32 version (1) + u32 dtype (1 uint8, 2 float16, 3 float32)
 *           + u32 height + u32 width + u32 channels (3) + u32 record count
 *           + u32 info bytes + UTF-8 JSON object (shard-level details; may be "{}")
 *   records: each u32 payload bytes + u32 CRC-32 of the payload + payload, where the payload is
 *           @idpo/data's pair-record payload: u32 prompt bytes + UTF-8 prompt + f64 winner reward
 *           + f64 loser reward (NaN = none) + u32 meta bytes + UTF-8 JSON meta (may be empty)
 *           + winner pixels + loser pixels (HWC RGB in the header's dtype; float values in [0, 1],
 *           uint8 values in [0, 255]).
 * Nothing may follow the last record.
 */
export const PAIR_SHARD_VERSION = 1;

const MAGIC = new TextEncoder().encode("IDPOSHRD");
const FIXED_HEADER_BYTES = 36;
const RECORD_HEADER_BYTES = 8;
const MAX_SIDE = 4096;

/** Pixel encoding of a shard's images. */
export type PairPixelDtype = "uint8" | "float16" | "float32";

const DTYPE_CODES: Record<PairPixelDtype, number> = { uint8: 1, float16: 2, float32: 3 };
const DTYPE_BYTES: Record<PairPixelDtype, number> = { uint8: 1, float16: 2, float32: 4 };

/** One pair to store. */
export interface PairShardRecordInput {
  /** The prompt both images answer. */
  prompt: string;
  /** The preferred image (the improver's output), HWC float in [0, 1]. */
  winner: Image;
  /** The other image (the policy's sample), HWC float in [0, 1]. */
  loser: Image;
  /** Reward of the winner, if known. */
  winnerReward?: number | null;
  /** Reward of the loser, if known. */
  loserReward?: number | null;
  /** Small JSON-serialisable details (e.g. `{ seed }`). */
  meta?: Record<string, unknown> | null;
}

/** A whole shard to encode. */
export interface PairShardInput {
  /** Image rows of every record. */
  height: number;
  /** Image columns of every record. */
  width: number;
  /** Pixel encoding; default "uint8" (the same quantisation as @idpo/data's rgb8 datasets). */
  dtype?: PairPixelDtype;
  /** Shard-level details (run, iteration, checkpoints, sampling settings). */
  info?: Record<string, unknown>;
  /** The pairs. */
  records: readonly PairShardRecordInput[];
}

/** A decoded shard. Records are @idpo/data PairRecords, so `batchPairs` can batch them. */
export interface PairShard {
  /** Format version read. */
  version: number;
  /** Pixel encoding the shard was stored in. */
  dtype: PairPixelDtype;
  /** Image rows. */
  height: number;
  /** Image columns. */
  width: number;
  /** Shard-level details. */
  info: Record<string, unknown>;
  /** The pairs, in stored order. */
  records: PairRecord[];
}

/** The artifact name of shard `shardIndex` of iteration `iteration` of run `runId`. */
export function pairShardArtifact(runId: string, iteration: number, shardIndex: number): string {
  if (!/^[A-Za-z0-9_=:@-]+$/.test(runId))
    throw new Error(`pairShardArtifact: invalid run id ${JSON.stringify(runId)}`);
  for (const [k, v] of [
    ["iteration", iteration],
    ["shardIndex", shardIndex],
  ] as const) {
    if (!Number.isInteger(v) || v < 0)
      throw new Error(`pairShardArtifact: ${k} must be a non-negative integer, got ${v}`);
  }
  return `runs/${runId}/iter-${iteration}/shard-${shardIndex}.pairs`;
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE-754 binary32 → binary16 bits, round to nearest even; overflow → ±Inf, NaN stays NaN. */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant !== 0 ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal (or zero) half: shift the mantissa with its implicit bit into place, then round.
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    return sign | (rem > mid || (rem === mid && (half & 1) === 1) ? half + 1 : half);
  }
  const half = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to Inf).
  return sign | (rem > 0x1000 || (rem === 0x1000 && (half & 1) === 1) ? half + 1 : half);
}

/** IEEE-754 binary16 bits → number. */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

function checkSide(v: number, what: string): void {
  if (!Number.isInteger(v) || v < 1 || v > MAX_SIDE)
    throw new Error(`${what} must be an integer in [1, ${MAX_SIDE}], got ${v}`);
}

function writePixels(view: DataView, o: number, img: Image, dtype: PairPixelDtype, where: string): number {
  const d = img.data;
  for (let k = 0; k < d.length; k++) {
    const v = d[k];
    if (!Number.isFinite(v)) throw new Error(`${where}: value ${v} at element ${k} is not finite`);
    const c = Math.min(Math.max(v, 0), 1);
    if (dtype === "uint8") {
      const q = c * 255 + 0.5;
      view.setUint8(o + k, q >= 255 ? 255 : Math.floor(q));
    } else if (dtype === "float16") {
      view.setUint16(o + 2 * k, float32ToFloat16Bits(c), true);
    } else {
      view.setFloat32(o + 4 * k, c, true);
    }
  }
  return o + d.length * DTYPE_BYTES[dtype];
}

/**
 * Encodes pairs as one shard blob. Images must be `height × width × 3`, finite; values are clamped to
 * [0, 1] before quantisation. Throws a message naming the record and field for anything malformed.
 */
export function encodePairShard(input: PairShardInput): Uint8Array {
  const dtype = input.dtype ?? "uint8";
  if (!(dtype in DTYPE_CODES))
    throw new Error(`encodePairShard: dtype must be uint8, float16 or float32, got ${dtype}`);
  checkSide(input.height, "encodePairShard: height");
  checkSide(input.width, "encodePairShard: width");
  if (!Array.isArray(input.records)) throw new Error("encodePairShard: records must be an array");
  const enc = new TextEncoder();
  const info = enc.encode(JSON.stringify(input.info ?? {}));
  const values = input.height * input.width * 3;
  const imageBytes = values * DTYPE_BYTES[dtype];
  const prompts: Uint8Array[] = [];
  const metas: Uint8Array[] = [];
  let total = FIXED_HEADER_BYTES + info.length;
  for (let i = 0; i < input.records.length; i++) {
    const r = input.records[i];
    if (typeof r?.prompt !== "string")
      throw new Error(`encodePairShard: records[${i}].prompt must be a string`);
    for (const which of ["winner", "loser"] as const) {
      const img = r[which];
      if (!img || !(img.data instanceof Float32Array)) {
        throw new Error(`encodePairShard: records[${i}].${which} must be an image with Float32Array data`);
      }
      if (img.height !== input.height || img.width !== input.width || img.data.length !== values) {
        throw new Error(
          `encodePairShard: records[${i}].${which} is ${img.height}x${img.width} with ${img.data.length} values, ` +
            `the shard is ${input.height}x${input.width}x3`,
        );
      }
    }
    prompts.push(enc.encode(r.prompt));
    metas.push(r.meta == null ? new Uint8Array(0) : enc.encode(JSON.stringify(r.meta)));
    total += RECORD_HEADER_BYTES + 4 + prompts[i].length + 16 + 4 + metas[i].length + 2 * imageBytes;
  }
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set(MAGIC, 0);
  view.setUint32(8, PAIR_SHARD_VERSION, true);
  view.setUint32(12, DTYPE_CODES[dtype], true);
  view.setUint32(16, input.height, true);
  view.setUint32(20, input.width, true);
  view.setUint32(24, 3, true);
  view.setUint32(28, input.records.length, true);
  view.setUint32(32, info.length, true);
  out.set(info, FIXED_HEADER_BYTES);
  let o = FIXED_HEADER_BYTES + info.length;
  for (let i = 0; i < input.records.length; i++) {
    const r = input.records[i];
    const start = o;
    o += RECORD_HEADER_BYTES;
    view.setUint32(o, prompts[i].length, true);
    out.set(prompts[i], o + 4);
    o += 4 + prompts[i].length;
    view.setFloat64(o, r.winnerReward ?? Number.NaN, true);
    view.setFloat64(o + 8, r.loserReward ?? Number.NaN, true);
    o += 16;
    view.setUint32(o, metas[i].length, true);
    out.set(metas[i], o + 4);
    o += 4 + metas[i].length;
    o = writePixels(view, o, r.winner, dtype, `encodePairShard: records[${i}].winner`);
    o = writePixels(view, o, r.loser, dtype, `encodePairShard: records[${i}].loser`);
    const payload = o - start - RECORD_HEADER_BYTES;
    view.setUint32(start, payload, true);
    view.setUint32(start + 4, crc32(out.subarray(start + RECORD_HEADER_BYTES, o)), true);
  }
  return out;
}

function readPixels(
  view: DataView,
  o: number,
  values: number,
  dtype: PairPixelDtype,
  height: number,
  width: number,
  where: string,
): Image {
  const data = new Float32Array(values);
  for (let k = 0; k < values; k++) {
    let v: number;
    if (dtype === "uint8") v = view.getUint8(o + k) / 255;
    else if (dtype === "float16") v = float16BitsToFloat32(view.getUint16(o + 2 * k, true));
    else v = view.getFloat32(o + 4 * k, true);
    if (!(v >= 0 && v <= 1)) throw new Error(`${where}: pixel value ${v} at element ${k} is outside [0, 1]`);
    data[k] = v;
  }
  return { height, width, data };
}

/**
 * Decodes and validates a shard blob: magic, version, dtype, sizes, record count, each record's CRC
 * and lengths, pixel ranges, and no trailing bytes. Errors name the shard part that is wrong.
 */
export function decodePairShard(bytes: Uint8Array): PairShard {
  const header = decodeShardHeader(bytes);
  const { version, dtype, height, width, info, count } = header;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const imageBytes = height * width * 3 * DTYPE_BYTES[dtype];
  const minRecord = RECORD_HEADER_BYTES + 4 + 16 + 4 + 2 * imageBytes;
  let o = header.recordsAt;
  if (count > (bytes.length - o) / minRecord) {
    throw new Error(
      `decodePairShard: header says ${count} records but only ${bytes.length - o} bytes follow`,
    );
  }
  const records: PairRecord[] = [];
  for (let i = 0; i < count; i++) {
    const where = `decodePairShard: record ${i}`;
    if (bytes.length - o < RECORD_HEADER_BYTES) throw new Error(`${where}: truncated record header`);
    const len = view.getUint32(o, true);
    const crc = view.getUint32(o + 4, true);
    const body = o + RECORD_HEADER_BYTES;
    if (len > bytes.length - body) throw new Error(`${where}: payload of ${len} bytes runs past the end`);
    if (crc32(bytes.subarray(body, body + len)) !== crc) throw new Error(`${where}: fails its CRC check`);
    records.push(decodeRecord(bytes, view, body, body + len, header, where));
    o = body + len;
  }
  if (o !== bytes.length)
    throw new Error(`decodePairShard: ${bytes.length - o} trailing bytes after ${count} records`);
  return { version, dtype, height, width, info, records };
}

/** The fixed and info header of a shard: what every record is read with, and where the records start. */
interface ShardHeader {
  version: number;
  dtype: PairPixelDtype;
  height: number;
  width: number;
  info: Record<string, unknown>;
  count: number;
  recordsAt: number;
}

const UTF8 = new TextDecoder("utf-8", { fatal: true });

function decodeShardHeader(bytes: Uint8Array): ShardHeader {
  if (!(bytes instanceof Uint8Array)) throw new Error("decodePairShard: expected a Uint8Array");
  if (bytes.length < FIXED_HEADER_BYTES) {
    throw new Error(
      `decodePairShard: ${bytes.length} bytes is shorter than the ${FIXED_HEADER_BYTES}-byte header`,
    );
  }
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new Error("decodePairShard: not a pair shard (bad magic)");
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = view.getUint32(8, true);
  if (version !== PAIR_SHARD_VERSION) {
    throw new Error(
      `decodePairShard: version ${version} is not supported (this reader reads ${PAIR_SHARD_VERSION})`,
    );
  }
  const code = view.getUint32(12, true);
  const dtype = (Object.keys(DTYPE_CODES) as PairPixelDtype[]).find((k) => DTYPE_CODES[k] === code);
  if (!dtype) throw new Error(`decodePairShard: unknown dtype code ${code}`);
  const height = view.getUint32(16, true);
  const width = view.getUint32(20, true);
  checkSide(height, "decodePairShard: height");
  checkSide(width, "decodePairShard: width");
  const channels = view.getUint32(24, true);
  if (channels !== 3) throw new Error(`decodePairShard: channels must be 3, got ${channels}`);
  const count = view.getUint32(28, true);
  const infoLen = view.getUint32(32, true);
  if (FIXED_HEADER_BYTES + infoLen > bytes.length) throw new Error("decodePairShard: truncated info header");
  let info: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(
      UTF8.decode(bytes.subarray(FIXED_HEADER_BYTES, FIXED_HEADER_BYTES + infoLen)),
    );
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Error("not a JSON object");
    info = parsed as Record<string, unknown>;
  } catch (e) {
    throw new Error(`decodePairShard: invalid info header (${(e as Error).message})`);
  }
  return { version, dtype, height, width, info, count, recordsAt: FIXED_HEADER_BYTES + infoLen };
}

/** One record's payload, bytes [body, end) (its CRC already checked). */
function decodeRecord(
  bytes: Uint8Array,
  view: DataView,
  body: number,
  end: number,
  h: ShardHeader,
  where: string,
): PairRecord {
  const { dtype, height, width } = h;
  const values = height * width * 3;
  const imageBytes = values * DTYPE_BYTES[dtype];
  let p = body;
  const need = (n: number, what: string) => {
    if (p + n > end) throw new Error(`${where}: truncated ${what}`);
  };
  need(4, "prompt length");
  const promptLen = view.getUint32(p, true);
  p += 4;
  need(promptLen + 20, "prompt");
  let prompt: string;
  let meta: Record<string, unknown> | null = null;
  try {
    prompt = UTF8.decode(bytes.subarray(p, p + promptLen));
  } catch {
    throw new Error(`${where}: prompt is not valid UTF-8`);
  }
  p += promptLen;
  const wr = view.getFloat64(p, true);
  const lr = view.getFloat64(p + 8, true);
  p += 16;
  const metaLen = view.getUint32(p, true);
  p += 4;
  need(metaLen, "meta");
  if (metaLen > 0) {
    try {
      meta = JSON.parse(UTF8.decode(bytes.subarray(p, p + metaLen))) as Record<string, unknown>;
    } catch (e) {
      throw new Error(`${where}: invalid meta JSON (${(e as Error).message})`);
    }
  }
  p += metaLen;
  if (end - p !== 2 * imageBytes) {
    throw new Error(
      `${where}: has ${end - p} image bytes, expected ${2 * imageBytes} (${height}x${width}x3 ${dtype} × 2)`,
    );
  }
  return {
    prompt,
    winner: readPixels(view, p, values, dtype, height, width, `${where} winner`),
    loser: readPixels(view, p + imageBytes, values, dtype, height, width, `${where} loser`),
    winnerReward: Number.isNaN(wr) ? null : wr,
    loserReward: Number.isNaN(lr) ? null : lr,
    meta,
  };
}

/** The records of a decoded shard as an async stream (for @idpo/data's `batchPairs`). */
export async function* pairShardRecords(shard: PairShard): AsyncGenerator<PairRecord> {
  for (const r of shard.records) yield r;
}
