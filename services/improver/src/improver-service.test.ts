import type { MessageInitShape } from "@bufbuild/protobuf";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { type Bus, decodeReport } from "@idpo/bus";
import { type DiffusionModel, improve } from "@idpo/diffusion";
import { CheckpointStore, imagesFromMessages, imagesToMessages } from "@idpo/mesh";
import {
  memoryLogger,
  putCheckpoint,
  tempBus,
  tinyImprover,
  tinyPolicy,
  useTestBackend,
} from "@idpo/mesh/test-fixtures";
import {
  Dtype,
  Health,
  HealthCheckResponse_ServingStatus,
  ImageFormat,
  type ImproveImagesRequest,
  ImproveImagesRequestSchema,
  ImproverService,
  ModelKind,
  RunEventSchema,
  type Sampler,
} from "@idpo/proto";
import { buildServer } from "@idpo/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { improverDefinition } from "./improver-service.js";

/** The object form of an ImproveImagesRequest initialiser (every field optional). */
type RequestInit = Exclude<MessageInitShape<typeof ImproveImagesRequestSchema>, ImproveImagesRequest>;

const S = 16;
const PROMPT = "a small red circle on a black background";

let bus: Bus;
let store: CheckpointStore;
let improverA: DiffusionModel;
let improverB: DiffusionModel;

beforeAll(async () => {
  await useTestBackend();
  ({ bus } = await tempBus());
  store = new CheckpointStore(bus.artifacts);
  improverA = tinyImprover(1);
  improverB = tinyImprover(2);
  const policy = tinyPolicy(3);
  await putCheckpoint(store, "runs/t/improver-a", improverA);
  await putCheckpoint(store, "runs/t/improver-b", improverB);
  await putCheckpoint(store, "runs/t/base", policy);
  policy.dispose();
});

afterAll(async () => {
  improverA.dispose();
  improverB.dispose();
  await bus.close();
});

/** Deterministic test images: image i is a smooth pattern depending on i. */
function inputs(n: number, offset = 0): Float32Array {
  const data = new Float32Array(n * S * S * 3);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < S * S * 3; k++)
      data[i * S * S * 3 + k] = 0.5 + 0.45 * Math.sin(0.37 * k + 1.3 * (i + offset));
  }
  return data;
}

async function start(env: Record<string, string> = {}) {
  const logger = memoryLogger();
  const built = await buildServer(improverDefinition({ bus, checkpoints: store }), {
    env: { IDPO_IMPROVER_CHECKPOINT: "runs/t/improver-a", ...env },
    logger,
  });
  const transport = createRouterTransport(built.routes, { router: built.routerOptions });
  const client = createClient(ImproverService, transport);
  const health = createClient(Health, transport);
  const servingStatus = async () => (await health.check({ service: ImproverService.typeName })).status;
  const waitServing = async () => {
    for (let i = 0; i < 200 && (await servingStatus()) !== HealthCheckResponse_ServingStatus.SERVING; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  return { built, client, servingStatus, waitServing, logger, close: () => built.instance.close?.() };
}

function request(n: number, init: RequestInit = {}, offset = 0): ImproveImagesRequest {
  return create(ImproveImagesRequestSchema, {
    images: imagesToMessages(
      { n, height: S, width: S, channels: 3, data: inputs(n, offset) },
      ImageFormat.TENSOR,
    ),
    prompts: [PROMPT],
    steps: 3,
    seed: 100n,
    outputFormat: ImageFormat.TENSOR,
    ...init,
  });
}

async function expectCode(p: Promise<unknown>, code: Code, message: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, "the call should have failed").toBeInstanceOf(ConnectError);
  expect(Code[(err as ConnectError).code]).toBe(Code[code]);
  expect((err as ConnectError).rawMessage).toMatch(message);
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function meanAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let s = 0;
  for (let i = 0; i < a.length; i++) s += Math.abs(a[i] - b[i]);
  return s / a.length;
}

describe("improver service", () => {
  it("is NOT_SERVING and answers FAILED_PRECONDITION until weights are loaded", async () => {
    const s = await start({ IDPO_IMPROVER_CHECKPOINT: "" });
    try {
      expect(await s.servingStatus()).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      await expectCode(
        s.client.improveImages(request(1)),
        Code.FailedPrecondition,
        /^no improver weights loaded: /,
      );
      expect((await s.client.getModel({})).checkpoint).toBeUndefined();
      const res = await s.client.loadCheckpoint({ checkpointId: "runs/t/improver-a" });
      expect(res.checkpoint).toMatchObject({ id: "runs/t/improver-a", kind: ModelKind.IMPROVER });
      expect(await s.servingStatus()).toBe(HealthCheckResponse_ServingStatus.SERVING);
      const model = await s.client.getModel({});
      expect(model.checkpoint?.id).toBe("runs/t/improver-a");
      expect(JSON.parse(model.configJson).unet.condChannels).toBe(3);
      expect(model.backend).toBe("wasm");
    } finally {
      await s.close();
    }
  });

  it("loads IDPO_IMPROVER_CHECKPOINT at start and refuses bad checkpoints with the right codes", async () => {
    const s = await start();
    try {
      await s.waitServing();
      expect((await s.client.getModel({})).checkpoint?.id).toBe("runs/t/improver-a");
      await expectCode(
        s.client.loadCheckpoint({ checkpointId: "" }),
        Code.InvalidArgument,
        /^checkpoint_id: required/,
      );
      await expectCode(
        s.client.loadCheckpoint({ checkpointId: "runs/../x" }),
        Code.InvalidArgument,
        /^checkpoint_id: invalid/,
      );
      await expectCode(
        s.client.loadCheckpoint({ checkpointId: "runs/t/none" }),
        Code.NotFound,
        /not in the artifact store/,
      );
      await expectCode(
        s.client.loadCheckpoint({ checkpointId: "runs/t/base" }),
        Code.InvalidArgument,
        /holds a policy model; this service loads improver models/,
      );
      expect((await s.client.getModel({})).checkpoint?.id).toBe("runs/t/improver-a");
    } finally {
      await s.close();
    }
  });

  it("validates every field and names it", async () => {
    const s = await start();
    try {
      await s.waitServing();
      const c = s.client;
      const bad = (init: RequestInit, re: RegExp, n = 2) =>
        expectCode(c.improveImages(request(n, init)), Code.InvalidArgument, re);
      await bad({ images: [] }, /^images: at least one image is required/);
      await bad({ prompts: [] }, /^prompts: got 0 prompts for 2 images/);
      await bad({ prompts: ["a", "b", "c"] }, /^prompts: got 3 prompts for 2 images/);
      await bad({ prompts: ["ok", "x".repeat(513)] }, /^prompts\[1\]: 513 characters is more than 512/);
      await bad({ textGuidanceScale: 30.5 }, /^text_guidance_scale: 30.5 is outside \[0, 30\]/);
      await bad({ imageGuidanceScale: -1 }, /^image_guidance_scale: -1 is outside \[0, 30\]/);
      await bad({ textGuidanceScale: Number.NaN }, /^text_guidance_scale: NaN/);
      await bad({ steps: 1001 }, /^steps: 1001 is more than 1000/);
      await bad({ strength: 0 }, /^strength: 0 is outside \(0, 1\]/);
      await bad({ strength: 1.5 }, /^strength: 1.5 is outside \(0, 1\]/);
      await bad({ seed: BigInt(Number.MAX_SAFE_INTEGER) }, /^seed: .* exceeds the largest seed/);
      await bad({ sampler: 7 as Sampler }, /^sampler: unknown sampler 7/);
      await bad({ outputFormat: 9 as ImageFormat }, /^output_format: unknown image format 9/);
      const small = imagesToMessages({ n: 1, height: 8, width: 8, channels: 3, data: new Float32Array(192) });
      await bad(
        { images: [...request(1).images, ...small] },
        /^images\[1\]: image is 8×8, the model needs 16×16/,
      );
      const wrongDtype = request(1).images[0];
      if (wrongDtype.data.case === "tensor") wrongDtype.data.value.dtype = Dtype.UNSPECIFIED;
      await bad({ images: [wrongDtype] }, /^images\[0\]: tensor dtype must be/);
      await bad(
        { images: [{ data: { case: "png", value: new Uint8Array([1, 2, 3]) } }] },
        /^images\[0\]: undecodable PNG/,
      );
      await bad(
        { images: new Array(1025).fill(request(1).images[0]) },
        /^images: 1025 images is more than the limit of 1024/,
      );
    } finally {
      await s.close();
    }
  });

  it("batches concurrent requests and gives each image the same output as running it alone", async () => {
    const s = await start({ IDPO_IMPROVER_MAX_DELAY_MS: "200", IDPO_IMPROVER_MAX_BATCH: "6" });
    try {
      await s.waitServing();
      // Three requests of 2, 3 and 4 images with the same settings, and one with other steps.
      const reqs = [
        request(2, { seed: 10n }, 0),
        request(3, { seed: 20n, prompts: ["a large blue square on a white background"] }, 2),
        request(4, { seed: 30n, prompts: ["p one", "p two", "p three", ""] }, 5),
        request(2, { seed: 40n, steps: 2 }, 9),
      ];
      const together = await Promise.all(reqs.map((r) => s.client.improveImages(r)));
      for (let r = 0; r < reqs.length; r++) {
        const got = imagesFromMessages(together[r].images, { field: "out", size: S });
        expect(got.n).toBe(reqs[r].images.length);
        expect(together[r].checkpoint?.id).toBe("runs/t/improver-a");
        // Reference: the library's improve() on this request alone (no batching at all).
        const ref = await improve(improverA, {
          images: {
            n: got.n,
            height: S,
            width: S,
            channels: 3,
            data: imagesFromMessages(reqs[r].images, { field: "in" }).data,
          },
          prompts: reqs[r].prompts.length === 1 ? new Array(got.n).fill(reqs[r].prompts[0]) : reqs[r].prompts,
          seeds: Array.from({ length: got.n }, (_, i) => Number(reqs[r].seed) + i),
          steps: reqs[r].steps,
          sT: 3.5,
          sI: 3.0,
        });
        expect(maxAbsDiff(got.data, ref.data)).toBeLessThanOrEqual(1e-6);
      }
      // Outputs depend on the input image and the prompt, not only the seed: a mix-up inside a batch
      // would have been caught above.
      const [x, y, z] = await Promise.all([
        s.client.improveImages(request(1, { seed: 5n }, 0)),
        s.client.improveImages(request(1, { seed: 5n }, 3)),
        s.client.improveImages(
          request(1, { seed: 5n, prompts: ["a large white square on a navy background"] }, 0),
        ),
      ]);
      const out = (r: typeof x) => imagesFromMessages(r.images, { field: "out" }).data;
      expect(maxAbsDiff(out(x), out(y))).toBeGreaterThan(1e-3);
      expect(maxAbsDiff(out(x), out(z))).toBeGreaterThan(1e-3);
    } finally {
      await s.close();
    }
  });

  it("runs part of the trajectory from the noised input at strength < 1 (SDEdit), batched apart", async () => {
    const s = await start({ IDPO_IMPROVER_MAX_DELAY_MS: "100" });
    try {
      await s.waitServing();
      const input = imagesFromMessages(request(2, {}, 4).images, { field: "in" });
      const [full, partial] = await Promise.all([
        s.client.improveImages(request(2, { seed: 7n, steps: 10 }, 4)),
        s.client.improveImages(request(2, { seed: 7n, steps: 10, strength: 0.3 }, 4)),
      ]);
      const got = imagesFromMessages(partial.images, { field: "out", size: S });
      // The library's improve() with the same strength, alone: the service passes strength through.
      const ref = await improve(improverA, {
        images: input,
        prompts: [PROMPT, PROMPT],
        seeds: [7, 8],
        steps: 10,
        sT: 3.5,
        sI: 3.0,
        strength: 0.3,
      });
      expect(maxAbsDiff(got.data, ref.data)).toBeLessThanOrEqual(1e-6);
      // Starting 30 % of the way from the end keeps the output closer to the input than a full run.
      const fullOut = imagesFromMessages(full.images, { field: "out" }).data;
      expect(meanAbsDiff(got.data, input.data)).toBeLessThan(meanAbsDiff(fullOut, input.data));
      expect(maxAbsDiff(got.data, input.data)).toBeGreaterThan(0);
    } finally {
      await s.close();
    }
  });

  it("merges same-settings requests into one batch and keeps other settings apart", async () => {
    const logger = memoryLogger();
    const { createImprover } = await import("./improver-service.js");
    const imp = await createImprover({
      config: {
        maxBatch: 32,
        maxDelayMs: 100,
        maxQueue: 1024,
        maxImages: 1024,
        checkpointId: "runs/t/improver-a",
      },
      checkpoints: store,
      logger,
      setServing: () => {},
    });
    try {
      await imp.ready;
      const transport = createRouterTransport((router) => imp.routes(router));
      const c = createClient(ImproverService, transport);
      await Promise.all([
        c.improveImages(request(2, { seed: 1n })),
        c.improveImages(request(3, { seed: 5n })),
        c.improveImages(request(1, { seed: 9n, textGuidanceScale: 1 })),
      ]);
      // Two keys: the first two requests (5 images) in one batch, the third alone.
      expect(imp.stats()).toMatchObject({ batches: 2, items: 6, largestBatch: 5 });
      // Requests bigger than max_batch are split over batches.
      const imp2 = await createImprover({
        config: {
          maxBatch: 2,
          maxDelayMs: 0,
          maxQueue: 1024,
          maxImages: 1024,
          checkpointId: "runs/t/improver-a",
        },
        checkpoints: store,
        logger,
        setServing: () => {},
      });
      await imp2.ready;
      const c2 = createClient(
        ImproverService,
        createRouterTransport((router) => imp2.routes(router)),
      );
      const split = await c2.improveImages(request(5, { seed: 1n }));
      const whole = await c.improveImages(request(5, { seed: 1n }));
      expect(imp2.stats()).toMatchObject({ batches: 3, items: 5, largestBatch: 2 });
      expect(
        maxAbsDiff(
          imagesFromMessages(split.images, { field: "a" }).data,
          imagesFromMessages(whole.images, { field: "b" }).data,
        ),
      ).toBeLessThanOrEqual(1e-6);
      await imp2.close();
    } finally {
      await imp.close();
    }
  });

  it("fails RESOURCE_EXHAUSTED on a full queue and drops requests whose deadline passed while queued", async () => {
    const s = await start({
      IDPO_IMPROVER_MAX_QUEUE: "4",
      IDPO_IMPROVER_MAX_DELAY_MS: "1500",
      IDPO_IMPROVER_MAX_BATCH: "4",
    });
    try {
      await s.waitServing();
      const waiting = s.client.improveImages(request(3), { timeoutMs: 300 });
      await new Promise((r) => setTimeout(r, 50));
      await expectCode(
        s.client.improveImages(request(2)),
        Code.ResourceExhausted,
        /^improver queue is full: 3 images waiting, limit 4 \(IDPO_IMPROVER_MAX_QUEUE\)/,
      );
      await expectCode(waiting, Code.DeadlineExceeded, /./);
      // The expired request left the queue without running: a full-size request fits again.
      const ok = await s.client.improveImages(request(4));
      expect(ok.images).toHaveLength(4);
    } finally {
      await s.close();
    }
  });

  it("reloads on a final IMPROVER checkpoint.published, ignores others, and survives malformed events", async () => {
    const s = await start();
    try {
      await s.waitServing();
      const reports: string[] = [];
      const audit = await bus.events.subscribe(
        { consumer: "audit-improver", filter: "idpo.reports.>", start: "new" },
        (m) => {
          reports.push(decodeReport(m).error);
        },
      );
      const publish = async (id: string, kind: ModelKind, isFinal: boolean) => {
        const ev = create(RunEventSchema, {
          eventId: `t/ckpt/${id}/${isFinal}`,
          runId: "t",
          time: timestampNow(),
          payload: {
            case: "checkpointPublished",
            value: { checkpoint: { id, kind }, jobId: "t-improver", isFinal },
          },
        });
        await bus.events.publish("idpo.events.t.checkpoint_published", toBinary(RunEventSchema, ev), {
          msgId: ev.eventId,
        });
      };
      await bus.events.publish("idpo.events.t.checkpoint_published", new Uint8Array([0xff, 0xff, 0xff]), {
        msgId: "junk-1",
      });
      await publish("runs/t/improver-b", ModelKind.IMPROVER, false);
      await publish("runs/t/base", ModelKind.POLICY, true);
      await publish("runs/t/improver-b", ModelKind.IMPROVER, true);
      for (let i = 0; i < 300 && (await s.client.getModel({})).checkpoint?.id !== "runs/t/improver-b"; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      expect((await s.client.getModel({})).checkpoint?.id).toBe("runs/t/improver-b");
      for (let i = 0; i < 300 && reports.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      expect(reports[0]).toMatch(/undecodable RunEvent/);
      const res = await s.client.improveImages(request(1));
      expect(res.checkpoint?.id).toBe("runs/t/improver-b");
      await audit.stop();
    } finally {
      await s.close();
    }
  });

  it("swaps weights under load without dropping a request; each finishes on the weights it started with", async () => {
    const s = await start({ IDPO_IMPROVER_MAX_DELAY_MS: "5", IDPO_IMPROVER_MAX_BATCH: "2" });
    try {
      await s.waitServing();
      const before = Array.from({ length: 4 }, (_, i) =>
        s.client.improveImages(request(2, { seed: BigInt(i * 10) }, i)),
      );
      await new Promise((r) => setTimeout(r, 5));
      const swap = s.client.loadCheckpoint({ checkpointId: "runs/t/improver-b" });
      await swap;
      const after = Array.from({ length: 2 }, (_, i) =>
        s.client.improveImages(request(2, { seed: BigInt(100 + i) }, i)),
      );
      const results = await Promise.all([...before, ...after]);
      const ids = results.map((r) => r.checkpoint?.id);
      expect(ids.slice(4)).toEqual(["runs/t/improver-b", "runs/t/improver-b"]);
      expect(ids[0]).toBe("runs/t/improver-a");
      // Every response matches a solo run of the checkpoint it reports.
      const inputsOf = (i: number) => ({
        n: 2,
        height: S,
        width: S,
        channels: 3 as const,
        data: inputs(2, i),
      });
      for (let k = 0; k < results.length; k++) {
        const model = ids[k] === "runs/t/improver-a" ? improverA : improverB;
        const seed = k < 4 ? k * 10 : 100 + (k - 4);
        const ref = await improve(model, {
          images: inputsOf(k < 4 ? k : k - 4),
          prompts: [PROMPT, PROMPT],
          seeds: [seed, seed + 1],
          steps: 3,
        });
        expect(
          maxAbsDiff(imagesFromMessages(results[k].images, { field: "o" }).data, ref.data),
        ).toBeLessThanOrEqual(1e-6);
      }
    } finally {
      await s.close();
    }
  });
});
