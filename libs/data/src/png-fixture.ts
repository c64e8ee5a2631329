/**
 * PNG files written chunk by chunk, for tests and benchmarks that need what no encoder writes: a given
 * bit depth, color type or interlacing, and decompression bombs (small files declaring huge images).
 */
import { once } from "node:events";
import zlib from "node:zlib";

/** IHDR fields of a hand-written PNG. */
export interface PngFileHeader {
  width: number;
  height: number;
  /** Bits per channel (1, 2, 4, 8 or 16). */
  bitDepth: number;
  /** 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA. */
  colorType: number;
  /** Adam7 interlacing. */
  interlaced?: boolean;
}

const SIGNATURE = Uint8Array.from([137, 80, 78, 71, 13, 10, 26, 10]);

/** CRC-32 (ISO-HDLC, as PNG chunks carry it) of `bytes`. */
export function pngCrc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  out.set(data, 8);
  out.writeUInt32BE(pngCrc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function assemble(h: PngFileHeader, idat: Uint8Array): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(h.width, 0);
  ihdr.writeUInt32BE(h.height, 4);
  ihdr.set([h.bitDepth, h.colorType, 0, 0, h.interlaced ? 1 : 0], 8);
  return new Uint8Array(
    Buffer.concat([SIGNATURE, chunk("IHDR", ihdr), chunk("IDAT", idat), chunk("IEND", new Uint8Array(0))]),
  );
}

/** A PNG with header `h` whose one IDAT chunk is `raw` (filtered scanlines) deflated. */
export function pngFile(h: PngFileHeader, raw: ArrayLike<number>): Uint8Array {
  return assemble(h, zlib.deflateSync(Uint8Array.from(raw)));
}

/**
 * A valid black 8-bit RGB PNG of `side`×`side`, its scanlines deflated as a stream (the raw image is never
 * held in memory). 8192 gives a ~200 KB file that inflates to 201 MB: a decompression bomb.
 */
export async function blackPngBomb(side: number): Promise<Uint8Array> {
  const deflate = zlib.createDeflate({ level: 9 });
  const parts: Buffer[] = [];
  deflate.on("data", (d: Buffer) => parts.push(d));
  const row = Buffer.alloc(1 + side * 3);
  for (let y = 0; y < side; y++) {
    if (!deflate.write(row)) await once(deflate, "drain");
  }
  const ended = once(deflate, "end");
  deflate.end();
  await ended;
  return assemble({ width: side, height: side, bitDepth: 8, colorType: 2 }, Buffer.concat(parts));
}
