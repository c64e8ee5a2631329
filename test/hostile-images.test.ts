/**
 * Hostile and unusual PNGs at the services that take them: a decompression bomb (196 KB declaring
 * 8192×8192) is refused from its header by the Improver and the Scorer before anything is inflated, and
 * alpha, gray and 16-bit PNGs follow the contract (alpha composited onto black, gray taken as RGB).
 */
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { blackPngBomb, pngFile } from "@idpo/data/test-fixtures";
import { createImprover, type Improver } from "@idpo/improver";
import { CheckpointStore } from "@idpo/mesh";
import { memoryLogger, putCheckpoint, tempBus, tinyImprover, useTestBackend } from "@idpo/mesh/test-fixtures";
import { ImageFormat, ImageSchema, ImproverService, ScorerService } from "@idpo/proto";
import { scorerRoutes } from "@idpo/scorer";
import pngjs from "pngjs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const { PNG } = pngjs;

/** A 16×16 PNG of one RGBA color, written by pngjs with the given color type and bit depth. */
function solidPng(rgba: [number, number, number, number], colorType: 0 | 2 | 6) {
  const png = new PNG({ width: 16, height: 16, colorType, inputHasAlpha: true });
  const data = Buffer.alloc(16 * 16 * 4);
  for (let p = 0; p < 256; p++) data.set(rgba, p * 4);
  png.data = data;
  return new Uint8Array(PNG.sync.write(png, { colorType, inputHasAlpha: true }));
}

async function codeOf(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail");
}

describe("hostile PNGs at the services", () => {
  let bus: Bus;
  let improver: Improver;
  let model: ReturnType<typeof tinyImprover>;
  let bomb: Uint8Array;

  beforeAll(async () => {
    await useTestBackend();
    ({ bus } = await tempBus());
    const store = new CheckpointStore(bus.artifacts);
    model = tinyImprover(41);
    await putCheckpoint(store, "hostile/improver", model);
    improver = await createImprover({
      config: { maxBatch: 8, maxDelayMs: 5, maxQueue: 64, maxImages: 64, checkpointId: "hostile/improver" },
      checkpoints: store,
      logger: memoryLogger(),
      setServing: () => {},
    });
    await improver.ready;
    bomb = await blackPngBomb(8192);
  });
  afterAll(async () => {
    await improver?.close();
    model?.dispose();
    await bus?.close();
  });

  const improverClient = () =>
    createClient(
      ImproverService,
      createRouterTransport((router) => improver.routes(router)),
    );
  const request = (png: Uint8Array) => ({
    images: [create(ImageSchema, { data: { case: "png", value: png } })],
    prompts: ["a small red circle on a black background"],
    steps: 3,
    seed: 7n,
    outputFormat: ImageFormat.TENSOR,
  });

  it("the Improver and the Scorer refuse a decompression bomb from its header", async () => {
    expect(bomb.length).toBeLessThan(400_000);
    const err = await codeOf(improverClient().improveImages(request(bomb)));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toBe("images[0]: image is 8192×8192, the model needs 16×16");
    // The size is read from the header: the header alone (no image data at all) gets the same answer.
    const headerOnly = await codeOf(improverClient().improveImages(request(bomb.subarray(0, 33))));
    expect(headerOnly.rawMessage).toBe("images[0]: image is 8192×8192, the model needs 16×16");
    const scorer = createClient(
      ScorerService,
      createRouterTransport(scorerRoutes({ maxImages: 16, imageSize: 0 }, () => Promise.resolve(bus))),
    );
    const scored = await codeOf(
      scorer.score({
        images: [create(ImageSchema, { data: { case: "png", value: bomb } })],
        prompts: ["a small red circle on a black background"],
      }),
    );
    expect(scored.code).toBe(Code.InvalidArgument);
    expect(scored.rawMessage).toBe("images[0]: image is 8192×8192, sides must be in [8, 256]");
  });

  it("improves a fully transparent red image exactly as black, and gray PNGs as their RGB twin", {
    timeout: 60_000,
  }, async () => {
    const c = improverClient();
    const out = async (png: Uint8Array) => {
      const res = await c.improveImages(request(png));
      const img = res.images[0].data;
      if (img.case !== "tensor") throw new Error("expected a tensor");
      return Buffer.from(img.value.data);
    };
    const transparentRed = await out(solidPng([255, 0, 0, 0], 6));
    const black = await out(solidPng([0, 0, 0, 255], 2));
    const opaqueRed = await out(solidPng([255, 0, 0, 255], 6));
    expect(transparentRed.equals(black)).toBe(true);
    expect(opaqueRed.equals(black)).toBe(false);
    // Gray 8-bit and 16-bit are converted to RGB: the same pixels as the RGB PNG of that gray.
    const grayRgb = await out(solidPng([128, 128, 128, 255], 2));
    expect((await out(solidPng([128, 128, 128, 255], 0))).equals(grayRgb)).toBe(true);
    // 16-bit gray 0x8080 = 128·257 is 128/255 exactly; each scanline is a filter byte (0) and 16 pixels.
    const row = [0, ...Array.from({ length: 32 }, () => 0x80)];
    const gray16 = pngFile({ width: 16, height: 16, bitDepth: 16, colorType: 0 }, Array(16).fill(row).flat());
    expect((await out(gray16)).equals(grayRgb)).toBe(true);
  });
});
