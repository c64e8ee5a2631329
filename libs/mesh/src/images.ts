import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodePng, encodePng, type ImageBatch, readPngHeader } from "@idpo/data";
import { Dtype, ImageFormat, type Image as ImageMessage, ImageSchema, TensorSchema } from "@idpo/proto";

/** Limits applied when reading images from a request. */
export interface ImageLimits {
  /** Request field name used in error messages, e.g. "images". */
  field: string;
  /** Required side length (square images), if the model fixes one. */
  size?: number;
  /** Smallest and largest side accepted when `size` is not fixed. */
  minSide?: number;
  maxSide?: number;
}

function invalid(msg: string): ConnectError {
  return new ConnectError(msg, Code.InvalidArgument);
}

/** Refuses a size the limits do not allow; called with the declared size, before anything is decoded. */
function checkSize(where: string, height: number, width: number, limits: ImageLimits): void {
  if (limits.size !== undefined && (height !== limits.size || width !== limits.size)) {
    throw invalid(`${where}: image is ${height}×${width}, the model needs ${limits.size}×${limits.size}`);
  }
  const lo = limits.minSide ?? 1;
  const hi = limits.maxSide ?? 4096;
  if (height < lo || width < lo || height > hi || width > hi) {
    throw invalid(`${where}: image is ${height}×${width}, sides must be in [${lo}, ${hi}]`);
  }
}

/**
 * Decodes one image after checking the size it declares (a PNG's header, a tensor's shape) against the
 * limits, so that a small message declaring a huge image costs nothing: a 196 KB PNG declaring 8192×8192
 * used to take seconds and a gigabyte to decode before its size was looked at.
 */
function decodeOne(
  msg: ImageMessage,
  where: string,
  limits: ImageLimits,
): { height: number; width: number; data: Float32Array } {
  switch (msg.data.case) {
    case "png": {
      let header: { height: number; width: number };
      try {
        header = readPngHeader(msg.data.value);
      } catch (err) {
        throw invalid(`${where}: undecodable PNG (${(err as Error).message})`);
      }
      checkSize(where, header.height, header.width, limits);
      try {
        return decodePng(msg.data.value);
      } catch (err) {
        throw invalid(`${where}: undecodable PNG (${(err as Error).message})`);
      }
    }
    case "tensor": {
      const t = msg.data.value;
      if (t.shape.length !== 3 || t.shape[2] !== 3) {
        throw invalid(`${where}: tensor shape [${t.shape.join(", ")}] is not [height, width, 3]`);
      }
      const [h, w] = t.shape;
      checkSize(where, h, w, limits);
      const count = h * w * 3;
      if (t.dtype === Dtype.FLOAT32) {
        if (t.data.byteLength !== count * 4) {
          throw invalid(`${where}: FLOAT32 tensor has ${t.data.byteLength} bytes, shape needs ${count * 4}`);
        }
        const view = new DataView(t.data.buffer, t.data.byteOffset, t.data.byteLength);
        const data = new Float32Array(count);
        for (let i = 0; i < count; i++) {
          const v = view.getFloat32(i * 4, true);
          if (!Number.isFinite(v) || v < 0 || v > 1) {
            throw invalid(`${where}: FLOAT32 tensor value ${v} at element ${i} is outside [0, 1]`);
          }
          data[i] = v;
        }
        return { height: h, width: w, data };
      }
      if (t.dtype === Dtype.UINT8) {
        if (t.data.byteLength !== count) {
          throw invalid(`${where}: UINT8 tensor has ${t.data.byteLength} bytes, shape needs ${count}`);
        }
        const data = new Float32Array(count);
        for (let i = 0; i < count; i++) data[i] = t.data[i] / 255;
        return { height: h, width: w, data };
      }
      throw invalid(`${where}: tensor dtype must be DTYPE_FLOAT32 or DTYPE_UINT8`);
    }
    default:
      throw invalid(`${where}: no image data (set png or tensor)`);
  }
}

/**
 * Decodes request images into one NHWC batch. Every image must have the same size (and `limits.size`
 * when given), checked from what each image declares before it is decoded. PNG alpha is composited onto
 * black; gray, palette and 16-bit PNGs are converted to 8-bit RGB. Errors are INVALID_ARGUMENT naming the
 * field and index, e.g. "images[3]: undecodable PNG".
 */
export function imagesFromMessages(images: readonly ImageMessage[], limits: ImageLimits): ImageBatch {
  if (images.length === 0) throw invalid(`${limits.field}: at least one image is required`);
  let height = 0;
  let width = 0;
  let data: Float32Array | undefined;
  for (let i = 0; i < images.length; i++) {
    const where = `${limits.field}[${i}]`;
    const img = decodeOne(images[i], where, limits);
    if (i === 0) {
      height = img.height;
      width = img.width;
      data = new Float32Array(images.length * height * width * 3);
    } else if (img.height !== height || img.width !== width) {
      throw invalid(
        `${where}: image is ${img.height}×${img.width} but ${limits.field}[0] is ${height}×${width}`,
      );
    }
    data!.set(img.data, i * height * width * 3);
  }
  return { n: images.length, height, width, channels: 3, data: data! };
}

/** Encodes a batch as image messages (PNG by default, or exact FLOAT32 tensors). */
export function imagesToMessages(batch: ImageBatch, format: ImageFormat = ImageFormat.PNG): ImageMessage[] {
  const per = batch.height * batch.width * 3;
  const out: ImageMessage[] = [];
  for (let i = 0; i < batch.n; i++) {
    const data = batch.data.subarray(i * per, (i + 1) * per);
    if (format === ImageFormat.TENSOR) {
      const bytes = new Uint8Array(per * 4);
      const view = new DataView(bytes.buffer);
      for (let k = 0; k < per; k++) view.setFloat32(k * 4, Math.min(1, Math.max(0, data[k])), true);
      out.push(
        create(ImageSchema, {
          data: {
            case: "tensor",
            value: create(TensorSchema, {
              shape: [batch.height, batch.width, 3],
              dtype: Dtype.FLOAT32,
              data: bytes,
            }),
          },
        }),
      );
    } else {
      const png = encodePng({ height: batch.height, width: batch.width, data: Float32Array.from(data) });
      out.push(create(ImageSchema, { data: { case: "png", value: new Uint8Array(png) } }));
    }
  }
  return out;
}
