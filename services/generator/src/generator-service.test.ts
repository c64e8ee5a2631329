import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { type DiffusionModel, sample } from "@idpo/diffusion";
import { CheckpointStore, imagesFromMessages } from "@idpo/mesh";
import { memoryLogger, putCheckpoint, tempBus, tinyPolicy, useTestBackend } from "@idpo/mesh/test-fixtures";
import {
  type GenerateImagesResponse,
  type GenerationSpecSchema,
  GeneratorService,
  Health,
  HealthCheckResponse_ServingStatus,
  ImageFormat,
  ModelKind,
  RunEventSchema,
  Sampler,
} from "@idpo/proto";
import { buildServer } from "@idpo/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generatorDefinition } from "./generator-service.js";

const S = 16;
const PROMPTS = ["a small red circle on a black background", "a large blue square on a white background"];

let bus: Bus;
let store: CheckpointStore;
let policyA: DiffusionModel;
let policyB: DiffusionModel;

beforeAll(async () => {
  await useTestBackend();
  ({ bus } = await tempBus());
  store = new CheckpointStore(bus.artifacts);
  policyA = tinyPolicy(11);
  policyB = tinyPolicy(12);
  await putCheckpoint(store, "runs/g/base", policyA);
  await putCheckpoint(store, "runs/g/iter-1/policy", policyB);
});

afterAll(async () => {
  policyA.dispose();
  policyB.dispose();
  await bus.close();
});

async function start(env: Record<string, string> = {}) {
  const logger = memoryLogger();
  const built = await buildServer(generatorDefinition({ bus, checkpoints: store }), {
    env: {
      IDPO_GENERATOR_CHECKPOINT: "runs/g/base",
      IDPO_GENERATOR_WORKERS: "0",
      IDPO_GENERATOR_BATCH: "4",
      ...env,
    },
    logger,
  });
  const transport = createRouterTransport(built.routes, { router: built.routerOptions });
  const client = createClient(GeneratorService, transport);
  const health = createClient(Health, transport);
  const servingStatus = async () => (await health.check({ service: GeneratorService.typeName })).status;
  const waitFor = async (cond: () => Promise<boolean>) => {
    for (let i = 0; i < 300 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 10));
  };
  await waitFor(
    async () => env.IDPO_GENERATOR_CHECKPOINT === "" || (await client.getModel({})).checkpoint !== undefined,
  );
  return { client, servingStatus, waitFor, logger, close: () => built.instance.close?.() };
}

type Spec = MessageInitShape<typeof GenerationSpecSchema>;
const spec = (s: Spec = {}): Spec => ({
  prompts: PROMPTS,
  steps: 3,
  seed: 7n,
  outputFormat: ImageFormat.TENSOR,
  ...s,
});

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

function pixels(res: Pick<GenerateImagesResponse, "images">): Float32Array {
  return imagesFromMessages(
    res.images.map((g) => g.image!),
    { field: "out", size: S },
  ).data;
}

describe("generator service", () => {
  it("is NOT_SERVING with FAILED_PRECONDITION until a policy is loaded", async () => {
    const s = await start({ IDPO_GENERATOR_CHECKPOINT: "" });
    try {
      expect(await s.servingStatus()).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      await expectCode(
        s.client.generateImages({ spec: spec() }),
        Code.FailedPrecondition,
        /^no policy weights loaded: /,
      );
      const stream = s.client.generateImagesStream({ spec: spec() });
      await expectCode(
        (async () => {
          for await (const _ of stream) break;
        })(),
        Code.FailedPrecondition,
        /^no policy weights loaded/,
      );
      const res = await s.client.loadCheckpoint({ checkpointId: "runs/g/base" });
      expect(res.checkpoint).toMatchObject({ id: "runs/g/base", kind: ModelKind.POLICY });
      expect(await s.servingStatus()).toBe(HealthCheckResponse_ServingStatus.SERVING);
      await expectCode(
        s.client.loadCheckpoint({ checkpointId: "runs/g/nope" }),
        Code.NotFound,
        /not in the artifact store/,
      );
    } finally {
      await s.close();
    }
  });

  it("validates the spec and names the field", async () => {
    const s = await start({ IDPO_GENERATOR_MAX_IMAGES: "8" });
    try {
      const bad = (sp: Spec | undefined, re: RegExp, code = Code.InvalidArgument) =>
        expectCode(s.client.generateImages({ spec: sp }), code, re);
      await bad(undefined, /^spec: required/);
      await bad(spec({ prompts: [] }), /^spec\.prompts: at least one prompt is required/);
      await bad(
        spec({ prompts: ["ok", "y".repeat(513)] }),
        /^spec\.prompts\[1\]: 513 characters is more than 512/,
      );
      await bad(spec({ imagesPerPrompt: 257 }), /^spec\.images_per_prompt: 257 is more than 256/);
      await bad(
        spec({ imagesPerPrompt: 5 }),
        /^spec: 10 images \(prompts × images_per_prompt\) is more than the limit of 8 for GenerateImages; use GenerateImagesStream/,
      );
      await bad(
        spec({ seeds: [1n, 2n, 3n] }),
        /^spec\.seeds: got 3 seeds, need prompts × images_per_prompt = 2/,
      );
      await bad(spec({ seeds: [1n, 2n ** 60n] }), /^spec\.seeds\[1\]: .* exceeds the largest seed/);
      await bad(spec({ seed: 2n ** 53n }), /^spec\.seed: .* exceeds the largest seed/);
      await bad(spec({ steps: 1001 }), /^spec\.steps: 1001 is more than 1000/);
      await bad(spec({ guidanceScale: 31 }), /^spec\.guidance_scale: 31 is outside \[0, 30\]/);
      await bad(spec({ guidanceScale: -0.5 }), /^spec\.guidance_scale: -0.5 is outside/);
      await bad(spec({ eta: 1.5 }), /^spec\.eta: 1.5 is outside \[0, 1\]/);
      await bad(spec({ sampler: 5 as Sampler }), /^spec\.sampler: unknown sampler 5/);
      await bad(spec({ outputFormat: 4 as ImageFormat }), /^spec\.output_format: unknown image format 4/);
      await bad(
        spec({ checkpointId: "runs/g/iter-1/policy" }),
        /^spec\.checkpoint_id: "runs\/g\/iter-1\/policy" is not loaded \(the generator holds "runs\/g\/base"\)/,
        Code.FailedPrecondition,
      );
      const stream = s.client.generateImagesStream({ spec: spec(), chunkSize: 5000 });
      await expectCode(
        (async () => {
          for await (const _ of stream) break;
        })(),
        Code.InvalidArgument,
        /^chunk_size: 5000 is more than 4096/,
      );
    } finally {
      await s.close();
    }
  });

  it("generates prompt-major images with the documented seeds, equal to the library's sample()", async () => {
    const s = await start();
    try {
      const res = await s.client.generateImages({
        spec: spec({ imagesPerPrompt: 3, checkpointId: "runs/g/base" }),
      });
      expect(res.checkpoint?.id).toBe("runs/g/base");
      expect(res.images.map((g) => [g.promptIndex, Number(g.seed)])).toEqual([
        [0, 7],
        [0, 8],
        [0, 9],
        [1, 10],
        [1, 11],
        [1, 12],
      ]);
      const ref = await sample(policyA, {
        prompts: [PROMPTS[0], PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[1], PROMPTS[1]],
        seeds: [7, 8, 9, 10, 11, 12],
        steps: 3,
        guidanceScale: 3,
      });
      expect(maxAbsDiff(pixels(res), ref.data)).toBeLessThanOrEqual(1e-6);
      // Explicit seeds, DDPM, no guidance, PNG output.
      const ddpm = await s.client.generateImages({
        spec: { prompts: PROMPTS, seeds: [3n, 99n], steps: 2, guidanceScale: 1, sampler: Sampler.DDPM },
      });
      expect(ddpm.images.map((g) => Number(g.seed))).toEqual([3, 99]);
      expect(ddpm.images[0].image?.data.case).toBe("png");
      const ref2 = await sample(policyA, {
        prompts: PROMPTS,
        seeds: [3, 99],
        steps: 2,
        guidanceScale: 1,
        sampler: "ddpm",
      });
      // PNG quantises to 8 bits.
      expect(maxAbsDiff(pixels(ddpm), ref2.data)).toBeLessThanOrEqual(0.5 / 255 + 1e-6);
    } finally {
      await s.close();
    }
  });

  it("streams chunks as they finish, equal to the unary call", async () => {
    const s = await start();
    try {
      const sp = spec({ imagesPerPrompt: 3 });
      const unary = await s.client.generateImages({ spec: sp });
      const chunks: { n: number; done: number; total: number }[] = [];
      const all: Float32Array[] = [];
      for await (const m of s.client.generateImagesStream({ spec: sp, chunkSize: 4 })) {
        chunks.push({ n: m.images.length, done: m.done, total: m.total });
        expect(m.checkpoint?.id).toBe("runs/g/base");
        all.push(pixels(m));
      }
      expect(chunks).toEqual([
        { n: 4, done: 4, total: 6 },
        { n: 2, done: 6, total: 6 },
      ]);
      const joined = new Float32Array(all.reduce((a, b) => a + b.length, 0));
      let o = 0;
      for (const a of all) {
        joined.set(a, o);
        o += a.length;
      }
      expect(maxAbsDiff(joined, pixels(unary))).toBe(0);
      // chunk_size 0 uses the service batch size (IDPO_GENERATOR_BATCH = 4).
      const sizes: number[] = [];
      for await (const m of s.client.generateImagesStream({ spec: sp })) sizes.push(m.images.length);
      expect(sizes).toEqual([4, 2]);
    } finally {
      await s.close();
    }
  });

  it("honours the deadline of a call", async () => {
    const s = await start();
    try {
      await expectCode(
        s.client.generateImages({ spec: spec({ steps: 400, imagesPerPrompt: 4 }) }, { timeoutMs: 50 }),
        Code.DeadlineExceeded,
        /./,
      );
    } finally {
      await s.close();
    }
  });

  it("swaps the policy under load: in-flight calls finish on the old weights, later ones use the new, none dropped", async () => {
    const s = await start();
    try {
      const sp = spec({ steps: 4 });
      const before = Array.from({ length: 3 }, () => s.client.generateImages({ spec: sp }));
      const stream = (async () => {
        const ids: string[] = [];
        for await (const m of s.client.generateImagesStream({
          spec: spec({ steps: 4, imagesPerPrompt: 4 }),
          chunkSize: 2,
        })) {
          ids.push(m.checkpoint!.id);
        }
        return ids;
      })();
      await new Promise((r) => setTimeout(r, 5));
      await s.client.loadCheckpoint({ checkpointId: "runs/g/iter-1/policy" });
      const after = Array.from({ length: 2 }, () => s.client.generateImages({ spec: sp }));
      const done = await Promise.all([...before, ...after]);
      expect(done.map((r) => r.checkpoint?.id)).toEqual([
        "runs/g/base",
        "runs/g/base",
        "runs/g/base",
        "runs/g/iter-1/policy",
        "runs/g/iter-1/policy",
      ]);
      // A stream started before the swap finishes entirely on the old weights.
      expect(new Set(await stream)).toEqual(new Set(["runs/g/base"]));
      const refA = await sample(policyA, { prompts: PROMPTS, seeds: [7, 8], steps: 4 });
      const refB = await sample(policyB, { prompts: PROMPTS, seeds: [7, 8], steps: 4 });
      expect(maxAbsDiff(pixels(done[0]), refA.data)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(pixels(done[4]), refB.data)).toBeLessThanOrEqual(1e-6);
      expect(maxAbsDiff(refA.data, refB.data)).toBeGreaterThan(1e-3);
    } finally {
      await s.close();
    }
  });

  it("reloads on a final POLICY checkpoint.published only", async () => {
    const s = await start({ IDPO_GENERATOR_WORKERS: "0" });
    try {
      const publish = async (id: string, kind: ModelKind, isFinal: boolean) => {
        const ev = create(RunEventSchema, {
          eventId: `g/ckpt/${id}/${kind}/${isFinal}`,
          runId: "g",
          time: timestampNow(),
          payload: { case: "checkpointPublished", value: { checkpoint: { id, kind }, isFinal } },
        });
        await bus.events.publish("idpo.events.g.checkpoint_published", toBinary(RunEventSchema, ev), {
          msgId: ev.eventId,
        });
      };
      await publish("runs/g/iter-1/policy", ModelKind.POLICY, false);
      await publish("runs/g/iter-1/policy", ModelKind.IMPROVER, true);
      await new Promise((r) => setTimeout(r, 100));
      expect((await s.client.getModel({})).checkpoint?.id).toBe("runs/g/base");
      await publish("runs/g/iter-1/policy", ModelKind.POLICY, true);
      await s.waitFor(async () => (await s.client.getModel({})).checkpoint?.id === "runs/g/iter-1/policy");
      expect((await s.client.getModel({})).checkpoint?.id, s.logger.lines.join("\n")).toBe(
        "runs/g/iter-1/policy",
      );
    } finally {
      await s.close();
    }
  });
});
