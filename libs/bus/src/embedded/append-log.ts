import {
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  truncateSync,
  writeSync,
} from "node:fs";
import { crc32 } from "node:zlib";

/**
 * An append-only file of framed records: [u32 length][u32 crc32][bytes], little-endian. Appends are
 * synchronous, so a record is in the OS's hands when `append` returns and survives the process dying. A
 * torn or corrupt tail (a crash mid-write) is cut off when the log is opened.
 */
export class AppendLog {
  private fd: number;
  /** Records appended since the log was opened or rewritten (drives compaction). */
  appended = 0;

  private constructor(
    readonly path: string,
    /** Records found when the log was opened. */
    readonly initial: Uint8Array[],
  ) {
    this.fd = openSync(path, "a");
  }

  /** Open (creating if needed) and read all intact records. */
  static open(path: string): AppendLog {
    const records: Uint8Array[] = [];
    if (existsSync(path)) {
      const buf = readFileSync(path);
      let off = 0;
      while (off + 8 <= buf.length) {
        const len = buf.readUInt32LE(off);
        const crc = buf.readUInt32LE(off + 4);
        if (off + 8 + len > buf.length) break;
        const rec = buf.subarray(off + 8, off + 8 + len);
        if (crc32(rec) !== crc) break;
        records.push(new Uint8Array(rec));
        off += 8 + len;
      }
      if (off < buf.length) {
        console.warn(`[bus] ${path}: dropping ${buf.length - off} bytes of torn or corrupt tail`);
        truncateSync(path, off);
      }
    }
    return new AppendLog(path, records);
  }

  private static frame(rec: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(8 + rec.length);
    out.writeUInt32LE(rec.length, 0);
    out.writeUInt32LE(crc32(rec), 4);
    out.set(rec, 8);
    return out;
  }

  append(rec: Uint8Array): void {
    const framed = AppendLog.frame(rec);
    let off = 0;
    while (off < framed.length) off += writeSync(this.fd, framed, off);
    this.appended++;
  }

  /** Replace the whole log with `records` atomically (write a temporary file, fsync, rename). */
  rewrite(records: Uint8Array[]): void {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, "w");
    for (const r of records) {
      const framed = AppendLog.frame(r);
      let off = 0;
      while (off < framed.length) off += writeSync(fd, framed, off);
    }
    fsyncSync(fd);
    closeSync(fd);
    closeSync(this.fd);
    renameSync(tmp, this.path);
    this.fd = openSync(this.path, "a");
    this.appended = 0;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/** Record codec used by the embedded stores: [u8 type][u32 meta length][meta JSON][payload]. */
export function encodeRecord(
  type: string,
  meta: object,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const m = Buffer.from(JSON.stringify(meta));
  const out = Buffer.allocUnsafe(5 + m.length + payload.length);
  out.writeUInt8(type.charCodeAt(0), 0);
  out.writeUInt32LE(m.length, 1);
  m.copy(out, 5);
  out.set(payload, 5 + m.length);
  return out;
}

/** Inverse of {@link encodeRecord}. */
export function decodeRecord<M>(rec: Uint8Array): { type: string; meta: M; payload: Uint8Array } {
  const b = Buffer.from(rec.buffer, rec.byteOffset, rec.byteLength);
  const type = String.fromCharCode(b.readUInt8(0));
  const len = b.readUInt32LE(1);
  const meta = JSON.parse(b.subarray(5, 5 + len).toString("utf8")) as M;
  return { type, meta, payload: new Uint8Array(rec.subarray(5 + len)) };
}
