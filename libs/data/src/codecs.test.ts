import pngjs from "pngjs";
import { describe, expect, it } from "vitest";
import { decodeJpeg, decodePng, encodeJpeg, encodePng, readPngHeader } from "./codecs.js";
import { DataRng } from "./data-rng.js";
import { type Image, rgb8ToImage } from "./image.js";
import { pngFile } from "./png-fixture.js";

const { PNG } = pngjs;

function randomImage(h: number, w: number, seed: number): Image {
  const rng = new DataRng(seed);
  const b = new Uint8Array(h * w * 3);
  for (let k = 0; k < b.length; k++) b[k] = rng.int(256);
  return rgb8ToImage(b, h, w);
}

describe("PNG", () => {
  it("round-trips 8-bit images exactly and rounds others to the nearest level", () => {
    const img = randomImage(7, 5, 1);
    const back = decodePng(encodePng(img));
    expect(back.height).toBe(7);
    expect(back.width).toBe(5);
    expect(back.data).toEqual(img.data);
    const odd: Image = { height: 1, width: 1, data: new Float32Array([0.5, -1, 2]) };
    expect(Array.from(decodePng(encodePng(odd)).data).map((v) => Math.round(v * 255))).toEqual([128, 0, 255]);
  });

  it("decodes grayscale and RGBA PNGs written by another encoder, compositing alpha onto black", () => {
    const png = new PNG({ width: 3, height: 1 });
    png.data = Buffer.from([10, 20, 30, 255, 200, 100, 50, 0, 200, 100, 50, 128]);
    const rgba = decodePng(PNG.sync.write(png));
    // Opaque as stored; fully transparent black; half transparent: 200·128/255 = 100.39, 100·128/255 = 50.20,
    // 50·128/255 = 25.10.
    expect(Array.from(rgba.data).map((v) => Math.round(v * 255))).toEqual([10, 20, 30, 0, 0, 0, 100, 50, 25]);
    expect(rgba.data[6]).toBeCloseTo((200 / 255) * (128 / 255), 6);
    const gray = new PNG({ width: 2, height: 1, colorType: 0 });
    gray.data = Buffer.from([77, 77, 77, 255, 3, 3, 3, 255]);
    const g = decodePng(PNG.sync.write(gray, { colorType: 0 }));
    expect(Array.from(g.data).map((v) => Math.round(v * 255))).toEqual([77, 77, 77, 3, 3, 3]);
  });

  it("reduces 16-bit channels to 8 bits", () => {
    // Gray 16-bit: 0x8000 (32768/65535 = 0.500008) and 0xffff; one filter byte (0) per row.
    const bytes = pngFile({ width: 2, height: 1, bitDepth: 16, colorType: 0 }, [0, 0x80, 0x00, 0xff, 0xff]);
    const img = decodePng(bytes);
    expect(Math.abs(img.data[0] - 32768 / 65535)).toBeLessThanOrEqual(1 / 255);
    expect(Array.from(img.data.subarray(3))).toEqual([1, 1, 1]);
  });

  it("refuses bytes that are not a PNG", () => {
    expect(() => decodePng(new Uint8Array([1, 2, 3, 4]))).toThrow(/decodePng: not a valid PNG/);
    expect(() => readPngHeader(new Uint8Array(40))).toThrow(/readPngHeader: not a PNG \(no PNG signature\)/);
  });

  it("reads the declared size from the header alone, before any image data", () => {
    expect(readPngHeader(encodePng(randomImage(7, 5, 2)))).toEqual({
      width: 5,
      height: 7,
      bitDepth: 8,
      colorType: 2,
      interlaced: false,
    });
    // A header declaring 8192×8192 followed by nothing: the size is known, nothing was inflated.
    const header = pngFile({ width: 8192, height: 8192, bitDepth: 8, colorType: 6 }, []).subarray(0, 33);
    expect(readPngHeader(header)).toMatchObject({ width: 8192, height: 8192, colorType: 6 });
  });

  it("decodes an interlaced PNG and refuses one whose data inflates past its declared size", () => {
    // 1×1 RGB, Adam7: only pass 1 holds the pixel (filter byte 0, then r, g, b).
    const one = pngFile(
      { width: 1, height: 1, bitDepth: 8, colorType: 2, interlaced: true },
      [0, 255, 128, 0],
    );
    expect(Array.from(decodePng(one).data).map((v) => Math.round(v * 255))).toEqual([255, 128, 0]);
    const bomb = pngFile(
      { width: 4, height: 4, bitDepth: 8, colorType: 2, interlaced: true },
      new Uint8Array(8 << 20),
    );
    expect(bomb.length).toBeLessThan(20_000);
    expect(() => decodePng(bomb)).toThrow(/decodePng: interlaced image data inflates past its 4x4 size/);
  });
});

describe("JPEG", () => {
  it("decodes what it encodes, close to the original (lossy) and with the right size", () => {
    const img: Image = { height: 16, width: 24, data: new Float32Array(16 * 24 * 3) };
    for (let i = 0; i < 16; i++) {
      for (let j = 0; j < 24; j++) {
        const o = (i * 24 + j) * 3;
        img.data[o] = j / 23;
        img.data[o + 1] = i / 15;
        img.data[o + 2] = 0.5;
      }
    }
    const back = decodeJpeg(encodeJpeg(img, 95));
    expect(back.height).toBe(16);
    expect(back.width).toBe(24);
    let err = 0;
    for (let k = 0; k < img.data.length; k++) err += Math.abs(back.data[k] - img.data[k]);
    expect(err / img.data.length).toBeLessThan(0.02);
  });

  it("throws decodeJpeg errors on corrupt or truncated bytes", () => {
    expect(() => decodeJpeg(new Uint8Array([0, 1, 2, 3]))).toThrow(/^decodeJpeg: /);
    const good = encodeJpeg(randomImage(8, 8, 2));
    expect(() => decodeJpeg(good.subarray(0, 40))).toThrow(/^decodeJpeg: /);
  });
});
