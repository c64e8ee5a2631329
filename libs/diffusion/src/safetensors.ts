/** One float32 tensor as stored in a safetensors file. */
export interface SafetensorsTensor {
  /** Dimensions (empty for a scalar). */
  shape: number[];
  /** Values, row-major. */
  data: Float32Array;
}

/** A parsed safetensors file. */
export interface SafetensorsFile {
  /** The `__metadata__` map (string → string, per the format). */
  metadata: Record<string, string>;
  /** Tensors in file order. */
  tensors: Map<string, SafetensorsTensor>;
  /** The raw data section (everything after the header), for hashing. */
  dataSection: Uint8Array;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Encodes tensors in the safetensors format: u64 little-endian header length N, an N-byte JSON
 * header (padded with spaces to a multiple of 8 so the data is aligned), then the raw little-endian
 * F32 data, tensors contiguous in the given order.
 */
export function encodeSafetensors(
  tensors: ReadonlyMap<string, SafetensorsTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new Error(`safetensors: metadata value for ${k} must be a string`);
  }
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error("safetensors: a tensor may not be named __metadata__");
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== size) {
      throw new Error(`safetensors: tensor ${name} has ${t.data.length} values but shape [${t.shape}]`);
    }
    header[name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + size * 4] };
    offset += size * 4;
  }
  let json = JSON.stringify(header);
  const enc = new TextEncoder();
  let headerBytes = enc.encode(json);
  const pad = (8 - (headerBytes.length % 8)) % 8;
  if (pad > 0) {
    json += " ".repeat(pad);
    headerBytes = enc.encode(json);
  }
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let pos = 8 + headerBytes.length;
  for (const t of tensors.values()) {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), pos);
    } else {
      for (let i = 0; i < t.data.length; i++) view.setFloat32(pos + i * 4, t.data[i], true);
    }
    pos += t.data.byteLength;
  }
  return out;
}

/** Parses a safetensors file, validating the header (F32 only, offsets contiguous and in bounds). */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (!(bytes instanceof Uint8Array)) throw new Error("safetensors: expected a Uint8Array");
  if (bytes.length < 8)
    throw new Error(`safetensors: ${bytes.length} bytes is too short for a header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > bytes.length - 8)
    throw new Error(`safetensors: header length ${n} exceeds the file (${bytes.length} bytes)`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw new Error(`safetensors: header is not valid JSON (${(e as Error).message})`);
  }
  if (header === null || typeof header !== "object" || Array.isArray(header)) {
    throw new Error("safetensors: header must be a JSON object");
  }
  const dataSection = bytes.subarray(8 + n);
  const metadata: Record<string, string> = {};
  const rawMeta = header.__metadata__;
  if (rawMeta !== undefined) {
    if (rawMeta === null || typeof rawMeta !== "object")
      throw new Error("safetensors: __metadata__ must be an object");
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== "string") throw new Error(`safetensors: __metadata__.${k} is not a string`);
      metadata[k] = v;
    }
  }
  const entries: { name: string; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (info.dtype !== "F32")
      throw new Error(`safetensors: tensor ${name} has dtype ${String(info.dtype)}; only F32 is supported`);
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`safetensors: tensor ${name} has an invalid shape`);
    }
    const off = info.data_offsets;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`safetensors: tensor ${name} has invalid data_offsets`);
    }
    const [begin, end] = off as [number, number];
    const size = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end - begin !== size * 4) {
      throw new Error(
        `safetensors: tensor ${name} spans ${end - begin} bytes but shape [${shape}] needs ${size * 4}`,
      );
    }
    entries.push({ name, shape: shape as number[], begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  let expect = 0;
  for (const e of sorted) {
    if (e.begin !== expect)
      throw new Error(
        `safetensors: tensor ${e.name} starts at ${e.begin}, expected ${expect} (gap or overlap)`,
      );
    expect = e.end;
  }
  if (expect !== dataSection.length) {
    throw new Error(
      `safetensors: tensors cover ${expect} bytes but the data section has ${dataSection.length}`,
    );
  }
  const tensors = new Map<string, SafetensorsTensor>();
  for (const e of sorted) {
    const count = (e.end - e.begin) / 4;
    const data = new Float32Array(count);
    const start = dataSection.byteOffset + e.begin;
    if (LITTLE_ENDIAN) {
      new Uint8Array(data.buffer).set(new Uint8Array(dataSection.buffer, start, e.end - e.begin));
    } else {
      const dv = new DataView(dataSection.buffer, start, e.end - e.begin);
      for (let i = 0; i < count; i++) data[i] = dv.getFloat32(i * 4, true);
    }
    tensors.set(e.name, { shape: e.shape, data });
  }
  return { metadata, tensors, dataSection };
}
