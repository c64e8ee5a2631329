import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { type DiffusionModel, improve, sample } from "@idpo/diffusion";
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
  InferenceService,
  ModelKind,
  RunEventSchema,
  type SampleImagesRequest,
  SampleImagesRequestSchema,
  TensorSchema,
} from "@idpo/proto";
import { buildServer } from "@idpo/runtime";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { inferenceDefinition } from "./inference-service.js";

const S = 16;
const PROMPTS = ["a small red circle on a white background", "a large blue square on a black background", ""];
let bus: Bus;
let store: CheckpointStore;
let policy: DiffusionModel;
let improver: DiffusionModel;

beforeAll(async () => {
  await useTestBackend();
  ({ bus } = await tempBus("inference"));
  store = new CheckpointStore(bus.artifacts);
  policy = tinyPolicy(1);
  improver = tinyImprover(2);
  await putCheckpoint(store, "runs/t/base", policy);
  await putCheckpoint(store, "runs/t/base-copy", policy);
  await putCheckpoint(store, "runs/t/improver", improver);
  await putCheckpoint(store, "runs/t/other", tinyPolicy(3));
});

afterAll(async () => {
  policy.dispose();
  improver.dispose();
  await bus.close();
});

async function start(env: Record<string, string> = {}) {
  const built = await buildServer(inferenceDefinition({ bus, checkpoints: store }), {
    env: { IDPO_INFERENCE_THREADS: "1", ...env },
    logger: memoryLogger(),
  });
  const transport = createRouterTransport(built.routes, { router: built.routerOptions });
  const client = createClient(InferenceService, transport);
  const health = createClient(Health, transport);
  const status = async () => (await health.check({ service: InferenceService.typeName })).status;
  const waitServing = async () => {
    for (let i = 0; i < 500 && (await status()) !== HealthCheckResponse_ServingStatus.SERVING; i++)
      await new Promise((r) => setTimeout(r, 10));
  };
  return { client, status, waitServing, close: () => built.instance.close?.() };
}

function policyRequest(init: MessageInitShape<typeof SampleImagesRequestSchema> = {}): SampleImagesRequest {
  return create(SampleImagesRequestSchema, {
    prompts: PROMPTS,
    seeds: [11n, 12n, 13n],
    steps: 5,
    guidance: { case: "classifierFree", value: { scale: 3 } },
    outputFormat: ImageFormat.TENSOR,
    ...init,
  });
}

function conditionImages(n: number): Float32Array {
  const data = new Float32Array(n * S * S * 3);
  for (let i = 0; i < data.length; i++) data[i] = 0.5 + 0.45 * Math.sin(0.37 * i);
  return data;
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

async function code(p: Promise<unknown>): Promise<Code | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

describe("inference service", () => {
  it("is NOT_SERVING and refuses calls until a model is loaded, then serves and describes it", async () => {
    const s = await start();
    try {
      expect(await s.status()).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      expect(await code(s.client.sampleImages(policyRequest()))).toBe(Code.FailedPrecondition);
      const loaded = await s.client.loadModel({ checkpointId: "runs/t/base" });
      expect(loaded.checkpoint?.id).toBe("runs/t/base");
      expect(loaded.cached).toBe(false);
      expect(await s.status()).toBe(HealthCheckResponse_ServingStatus.SERVING);
      const d = await s.client.describeModel({});
      expect(d.checkpoint?.id).toBe("runs/t/base");
      expect(d.engine).toMatch(/^onnxruntime-node 1\.\d+\.\d+ \(cpu, 1 thread\)$/);
      expect(d.textGraphSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(d.unetGraphSha256).toMatch(/^[0-9a-f]{64}$/);
      expect(JSON.parse(d.configJson).unet.imageSize).toBe(S);
      // The same weights under another id come from the cache.
      expect((await s.client.loadModel({ checkpointId: "runs/t/base-copy" })).cached).toBe(true);
    } finally {
      await s.close();
    }
  });

  it("samples what the tfjs sampler samples (CFG); concurrent callers each get their own seeds' images", async () => {
    const s = await start({ IDPO_INFERENCE_CHECKPOINT: "runs/t/base", IDPO_INFERENCE_MAX_DELAY_MS: "50" });
    try {
      await s.waitServing();
      const ref = await sample(policy, { prompts: PROMPTS, seeds: [11, 12, 13], steps: 5, guidanceScale: 3 });
      // Two callers at once: one batch, and each image is still its own seed's image.
      const [a, b] = await Promise.all([
        s.client.sampleImages(policyRequest({ prompts: PROMPTS.slice(0, 2), seeds: [11n, 12n] })),
        s.client.sampleImages(policyRequest({ prompts: PROMPTS.slice(2), seeds: [13n] })),
      ]);
      expect(a.checkpoint?.id).toBe("runs/t/base");
      const got = new Float32Array(3 * S * S * 3);
      got.set(imagesFromMessages(a.images, { field: "a", size: S }).data, 0);
      got.set(imagesFromMessages(b.images, { field: "b", size: S }).data, 2 * S * S * 3);
      expect(maxAbs(got, ref.data)).toBeLessThan(1e-3);
    } finally {
      await s.close();
    }
  });

  it("improves with double guidance and SDEdit on a named checkpoint, and predicts ε", async () => {
    const s = await start({ IDPO_INFERENCE_CHECKPOINT: "runs/t/base" });
    try {
      const cond = conditionImages(3);
      const images = { n: 3, height: S, width: S, channels: 3 as const, data: cond };
      const ref = await improve(improver, {
        images,
        prompts: PROMPTS,
        seeds: [5, 6, 7],
        steps: 6,
        sT: 4,
        sI: 2,
        strength: 0.5,
      });
      const res = await s.client.sampleImages(
        create(SampleImagesRequestSchema, {
          prompts: PROMPTS,
          seeds: [5n, 6n, 7n],
          conditionImages: imagesToMessages(images, ImageFormat.TENSOR),
          steps: 6,
          guidance: { case: "double", value: { textScale: 4, imageScale: 2 } },
          strength: 0.5,
          outputFormat: ImageFormat.TENSOR,
          checkpointId: "runs/t/improver",
        }),
      );
      expect(res.checkpoint?.id).toBe("runs/t/improver");
      expect(maxAbs(imagesFromMessages(res.images, { field: "r", size: S }).data, ref.data)).toBeLessThan(
        1e-3,
      );
      // The named checkpoint did not replace the current one.
      expect((await s.client.describeModel({})).checkpoint?.id).toBe("runs/t/base");

      const x = new Float32Array(2 * S * S * 3).map((_, i) => Math.sin(i));
      const eps = await s.client.predictEps({
        xT: create(TensorSchema, {
          shape: [2, S, S, 3],
          dtype: Dtype.FLOAT32,
          data: new Uint8Array(x.buffer),
        }),
        timesteps: [500, 20],
        prompts: [PROMPTS[0]],
      });
      const want = tf.tidy(() =>
        policy.predictEps(tf.tensor4d(x, [2, S, S, 3]), [500, 20], [PROMPTS[0], PROMPTS[0]]),
      );
      const wantData = want.dataSync() as Float32Array;
      want.dispose();
      const got = new Float32Array(eps.eps!.data.slice().buffer);
      let scale = 0;
      for (const v of wantData) scale = Math.max(scale, Math.abs(v));
      expect(maxAbs(got, wantData) / scale).toBeLessThan(1e-4);
    } finally {
      await s.close();
    }
  });

  it("batches concurrent PredictEps calls: each gets the ε it gets alone", async () => {
    const s = await start({
      IDPO_INFERENCE_CHECKPOINT: "runs/t/improver",
      IDPO_INFERENCE_MAX_DELAY_MS: "50",
    });
    try {
      await s.waitServing();
      const call = (seed: number, n: number) => {
        const x = new Float32Array(n * S * S * 3).map((_, i) => Math.sin(i * 0.1 + seed));
        const c = new Float32Array(n * S * S * 3).map((_, i) => Math.cos(i * 0.05 + seed) * 0.5);
        return s.client.predictEps({
          xT: create(TensorSchema, {
            shape: [n, S, S, 3],
            dtype: Dtype.FLOAT32,
            data: new Uint8Array(x.buffer),
          }),
          timesteps: [100 + seed],
          prompts: [PROMPTS[seed % PROMPTS.length]],
          condition: create(TensorSchema, {
            shape: [n, S, S, 3],
            dtype: Dtype.FLOAT32,
            data: new Uint8Array(c.buffer),
          }),
        });
      };
      const together = await Promise.all([call(1, 2), call(2, 1), call(3, 3)]);
      for (const [i, [seed, n]] of [
        [1, 2],
        [2, 1],
        [3, 3],
      ].entries()) {
        const alone = new Float32Array((await call(seed, n)).eps!.data.slice().buffer);
        const got = new Float32Array(together[i].eps!.data.slice().buffer);
        expect(together[i].eps!.shape).toEqual([n, S, S, 3]);
        let scale = 0;
        for (const v of alone) scale = Math.max(scale, Math.abs(v));
        expect(scale).toBeGreaterThan(1e-3);
        expect(maxAbs(got, alone) / scale).toBeLessThan(1e-5);
      }
    } finally {
      await s.close();
    }
  });

  it("refuses bad requests with INVALID_ARGUMENT or NOT_FOUND before sampling", async () => {
    const s = await start({ IDPO_INFERENCE_CHECKPOINT: "runs/t/base" });
    try {
      await s.client.loadModel({ checkpointId: "runs/t/base" });
      const cases: [() => Promise<unknown>, Code][] = [
        [() => s.client.sampleImages(policyRequest({ seeds: [1n] })), Code.InvalidArgument],
        [() => s.client.sampleImages(policyRequest({ prompts: [], seeds: [] })), Code.InvalidArgument],
        [
          () =>
            s.client.sampleImages(
              policyRequest({ guidance: { case: "double", value: { textScale: 1, imageScale: 1 } } }),
            ),
          Code.InvalidArgument,
        ],
        [
          () =>
            s.client.sampleImages(
              policyRequest({ guidance: { case: "classifierFree", value: { scale: 31 } } }),
            ),
          Code.InvalidArgument,
        ],
        [() => s.client.sampleImages(policyRequest({ steps: 1001 })), Code.InvalidArgument],
        [() => s.client.sampleImages(policyRequest({ eta: 2 })), Code.InvalidArgument],
        [() => s.client.sampleImages(policyRequest({ strength: 0.5 })), Code.InvalidArgument],
        [() => s.client.sampleImages(policyRequest({ seeds: [1n, 2n, 2n ** 60n] })), Code.InvalidArgument],
        [() => s.client.sampleImages(policyRequest({ checkpointId: "runs/t/missing" })), Code.NotFound],
        [() => s.client.sampleImages(policyRequest({ checkpointId: "../etc" })), Code.InvalidArgument],
        [
          () => s.client.sampleImages(policyRequest({ checkpointId: "runs/t/improver" })),
          Code.InvalidArgument,
        ],
        [() => s.client.predictEps({ timesteps: [1], prompts: [""] }), Code.InvalidArgument],
        [
          () =>
            s.client.predictEps({
              xT: create(TensorSchema, {
                shape: [1, S, S, 3],
                dtype: Dtype.FLOAT32,
                data: new Uint8Array(S * S * 12),
              }),
              timesteps: [1000],
              prompts: [""],
            }),
          Code.InvalidArgument,
        ],
      ];
      for (const [call, want] of cases) expect(await code(call())).toBe(want);
    } finally {
      await s.close();
    }
  });

  it("follows published checkpoints of its kind; calls running during the swap finish on their weights", async () => {
    const s = await start({ IDPO_INFERENCE_CHECKPOINT: "runs/t/base", IDPO_INFERENCE_FOLLOW: "policy" });
    try {
      await s.waitServing();
      const running = s.client.sampleImages(policyRequest({ steps: 20 }));
      const publish = async (id: string, kind: ModelKind) => {
        const ev = create(RunEventSchema, {
          eventId: `t/ckpt/${id}`,
          runId: "t",
          time: timestampNow(),
          payload: {
            case: "checkpointPublished",
            value: { checkpoint: { id, kind }, jobId: "j", isFinal: true },
          },
        });
        await bus.events.publish("idpo.events.t.checkpoint_published", toBinary(RunEventSchema, ev), {
          msgId: ev.eventId,
        });
      };
      await publish("runs/t/improver", ModelKind.IMPROVER);
      await publish("runs/t/other", ModelKind.POLICY);
      for (let i = 0; i < 500 && (await s.client.describeModel({})).checkpoint?.id !== "runs/t/other"; i++)
        await new Promise((r) => setTimeout(r, 10));
      expect((await s.client.describeModel({})).checkpoint?.id).toBe("runs/t/other");
      expect((await running).checkpoint?.id).toBe("runs/t/base");
      expect((await s.client.sampleImages(policyRequest())).checkpoint?.id).toBe("runs/t/other");
    } finally {
      await s.close();
    }
  });
});
