import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { type Bus, openBus } from "@idpo/bus";
import { DataRng, encodePng, renderDegraded, renderIdeal, solidImage } from "@idpo/data";
import { imagesToMessages } from "@idpo/mesh";
import { oracleReward } from "@idpo/metrics";
import { ImageFormat, RunEventSchema, ScorerService } from "@idpo/proto";
import { afterAll, describe, expect, it } from "vitest";
import { scorerRoutes } from "./scorer-service.js";

const RED = "a small red circle on a black background";
const CYAN = "a large cyan triangle on a navy background";

let bus: Bus | undefined;
const getBus = async () => {
  bus ??= await openBus({ backend: "embedded", dataDir: mkdtempSync(join(tmpdir(), "idpo-scorer-")) });
  return bus;
};
afterAll(async () => {
  await bus?.close();
});

function client(opts = { maxImages: 8, imageSize: 0 }) {
  return createClient(ScorerService, createRouterTransport(scorerRoutes(opts, getBus)));
}

function tensorMessages(images: { height: number; width: number; data: Float32Array }[]) {
  return images.flatMap((img) =>
    imagesToMessages(
      { n: 1, height: img.height, width: img.width, channels: 3, data: img.data },
      ImageFormat.TENSOR,
    ),
  );
}

describe("Score", () => {
  it("returns the library's oracle reward and components for each image", async () => {
    const images = [renderIdeal(RED, 16), renderIdeal(CYAN, 16)];
    const res = await client().score({ images: tensorMessages(images), prompts: [RED, CYAN] });
    expect(res.scores).toHaveLength(2);
    const lib = oracleReward(images[1], CYAN);
    expect(res.scores[1].reward).toBeCloseTo(lib.reward, 6);
    expect(res.scores[1].components?.clean).toBeCloseTo(lib.clean, 6);
    expect(res.scores[0].reward).toBeGreaterThan(0.9);
  });

  it.each([
    ["no images", { images: [], prompts: [] }, /images: at least one image is required/],
    ["too many images", { n: 9 }, /9 images is more than the limit of 8/],
    ["a prompt count mismatch", { n: 2, prompts: [RED] }, /prompts: 1 prompts for 2 images/],
    ["an undecodable PNG", { bad: "png" }, /images\[1\]: undecodable PNG/],
    ["a prompt outside the grammar", { n: 2, prompts: [RED, "a dog on a beach"] }, /prompts\[1\]/],
    ["images of different sizes", { bad: "size" }, /images\[1\]: image is 32×32 but images\[0\] is 16×16/],
  ])("refuses %s with INVALID_ARGUMENT naming it", async (_what, spec, message) => {
    const img = renderIdeal(RED, 16);
    let req: { images: ReturnType<typeof tensorMessages>; prompts: string[] };
    if ("images" in spec) req = { images: [], prompts: [] };
    else if ("bad" in spec && spec.bad === "png") {
      req = {
        images: [
          ...tensorMessages([img]),
          { data: { case: "png", value: new Uint8Array([1, 2, 3]) } } as never,
        ],
        prompts: [RED, RED],
      };
    } else if ("bad" in spec && spec.bad === "size") {
      req = { images: tensorMessages([img, renderIdeal(RED, 32)]), prompts: [RED, RED] };
    } else {
      const n = (spec as { n: number }).n;
      req = {
        images: tensorMessages(Array.from({ length: n }, () => img)),
        prompts: (spec as { prompts?: string[] }).prompts ?? Array(n).fill(RED),
      };
    }
    await expect(client().score(req)).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(message),
    });
  });

  it("refuses the wrong size when the world fixes one", async () => {
    const c = client({ maxImages: 8, imageSize: 16 });
    await expect(
      c.score({ images: tensorMessages([renderIdeal(RED, 32)]), prompts: [RED] }),
    ).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/images\[0\]: image is 32×32, the model needs 16×16/),
    });
  });

  it("accepts PNG images", async () => {
    const png = encodePng(renderIdeal(RED, 16));
    const res = await client().score({
      images: [{ data: { case: "png", value: new Uint8Array(png) } }],
      prompts: [RED],
    });
    expect(res.scores[0].reward).toBeGreaterThan(0.9);
  });
});

describe("Evaluate", () => {
  it("gives mean reward with CI, Vendi per prompt, win-rate against a reference, and publishes eval.completed", async () => {
    const ideal = [renderIdeal(RED, 16), renderIdeal(RED, 16), renderIdeal(CYAN, 16), renderIdeal(CYAN, 16)];
    const bg = [
      solidImage(16, 16, [0, 0, 0]),
      solidImage(16, 16, [0, 0, 0]),
      solidImage(16, 16, [0.05, 0.05, 0.35]),
      solidImage(16, 16, [0.05, 0.05, 0.35]),
    ];
    const prompts = [RED, RED, CYAN, CYAN];
    const res = await client().evaluate({
      images: tensorMessages(ideal),
      prompts,
      referenceImages: tensorMessages(bg),
      runId: "run-eval-1",
      iteration: 2,
      label: "policy",
      checkpointId: "runs/run-eval-1/iter-2/policy",
    });
    const rewards = ideal.map((img, i) => oracleReward(img, prompts[i]).reward);
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    expect(res.reward?.mean).toBeCloseTo(mean, 6);
    expect(res.reward?.n).toBe(4);
    expect(res.reward!.ci95Low).toBeLessThanOrEqual(mean);
    expect(res.winRate).toBe(1);
    // Two identical images per prompt: Vendi = 1.
    expect(res.vendi).toBeCloseTo(1, 6);
    expect(res.perPrompt.map((p) => p.prompt)).toEqual([RED, CYAN]);

    const b = await getBus();
    const seen: string[] = [];
    const sub = await b.events.subscribe(
      { consumer: "scorer-test", filter: "idpo.events.run-eval-1.>" },
      (msg) => {
        const ev = fromBinary(RunEventSchema, msg.data);
        if (ev.payload.case === "evalCompleted")
          seen.push(`${ev.payload.value.iteration}/${ev.payload.value.label}`);
      },
    );
    const deadline = Date.now() + 5000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    await sub.stop();
    expect(seen).toEqual(["2/policy"]);
  });

  it("has more Vendi diversity for varied samples than for copies", async () => {
    const rng = new DataRng(7);
    const varied = [1, 2, 3, 4].map(() => renderDegraded(RED, 16, 1, rng).image);
    const res = await client().evaluate({ images: tensorMessages(varied), prompts: [RED, RED, RED, RED] });
    expect(res.vendi).toBeGreaterThan(1.2);
    expect(res.winRate).toBeUndefined();
  });

  it("refuses a run id that cannot be an event subject token", async () => {
    const img = renderIdeal(RED, 16);
    await expect(
      client().evaluate({ images: tensorMessages([img]), prompts: [RED], runId: "run 1/x" }),
    ).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/run_id "run 1\/x" is not valid/),
    });
  });

  it("refuses a reference set of the wrong length", async () => {
    const img = renderIdeal(RED, 16);
    await expect(
      client().evaluate({
        images: tensorMessages([img, img]),
        prompts: [RED, RED],
        referenceImages: tensorMessages([img]),
      }),
    ).rejects.toMatchObject({
      code: Code.InvalidArgument,
      rawMessage: expect.stringMatching(/reference_images: 1 reference images for 2 images/),
    });
  });
});
