import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import type { DiffusionModel } from "@idpo/diffusion";
import { generatorDefinition } from "@idpo/generator";
import { improverDefinition } from "@idpo/improver";
import { createInferenceServer, inferenceConfigFromEnv } from "@idpo/inference";
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
  GeneratorService,
  Health,
  HealthCheckResponse_ServingStatus,
  ImageFormat,
  ImproveImagesRequestSchema,
  ImproverService,
  InferenceService,
  type Job,
  JobKind,
  JobState,
  type SampleImagesRequest,
  TrainerService,
} from "@idpo/proto";
import { buildServer, type ServiceDefinition } from "@idpo/runtime";
import { trainerDefinition } from "@idpo/trainer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The Generator and the Improver with IDPO_INFERENCE=sidecar sample through an inference server (ONNX
// Runtime); the same requests with IDPO_INFERENCE=in-process sample with tfjs. Their images agree to the
// stated sampler tolerance, and GetModel says which engine served.

const S = 16;
const PROMPTS = ["a small red circle on a black background", "a large blue square on a white background"];
const TOL = 1e-3;
let bus: Bus;
let store: CheckpointStore;
let policy: DiffusionModel;
let improver: DiffusionModel;

beforeAll(async () => {
  await useTestBackend();
  ({ bus } = await tempBus("sidecar"));
  store = new CheckpointStore(bus.artifacts);
  policy = tinyPolicy(21);
  improver = tinyImprover(22);
  await putCheckpoint(store, "runs/s/base", policy);
  await putCheckpoint(store, "runs/s/improver", improver);
});

afterAll(async () => {
  policy.dispose();
  improver.dispose();
  await bus.close();
});

async function startSidecar(interceptors: Interceptor[] = []) {
  const server = await createInferenceServer({
    config: { ...inferenceConfigFromEnv({}), threads: 1 },
    checkpoints: store,
    logger: memoryLogger(),
    setServing: () => {},
  });
  const transport = createRouterTransport((router) => server.routes(router), { router: { interceptors } });
  return { server, transport, client: createClient(InferenceService, transport) };
}

async function startService(
  def: ServiceDefinition,
  service: { typeName: string },
  env: Record<string, string>,
) {
  const built = await buildServer(def, { env, logger: memoryLogger() });
  const transport = createRouterTransport(built.routes, { router: built.routerOptions });
  const health = createClient(Health, transport);
  for (
    let i = 0;
    i < 500 &&
    (await health.check({ service: service.typeName })).status !== HealthCheckResponse_ServingStatus.SERVING;
    i++
  )
    await new Promise((r) => setTimeout(r, 10));
  return { transport, close: () => built.instance.close?.() };
}

function maxAbs(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe("Generator and Improver through the inference sidecar", () => {
  it("generates the in-process images; GetModel names the sidecar; the sidecar holds the policy", async () => {
    const sidecar = await startSidecar();
    const spec = {
      prompts: PROMPTS,
      imagesPerPrompt: 2,
      seed: 5n,
      steps: 4,
      outputFormat: ImageFormat.TENSOR,
    };
    const env = { IDPO_GENERATOR_CHECKPOINT: "runs/s/base", IDPO_GENERATOR_WORKERS: "0" };
    const viaSidecar = await startService(
      generatorDefinition({ bus, checkpoints: store, inferenceTransport: sidecar.transport }),
      GeneratorService,
      { ...env, IDPO_INFERENCE: "sidecar" },
    );
    const inProcess = await startService(generatorDefinition({ bus, checkpoints: store }), GeneratorService, {
      ...env,
      IDPO_INFERENCE: "in-process",
    });
    try {
      const a = createClient(GeneratorService, viaSidecar.transport);
      const b = createClient(GeneratorService, inProcess.transport);
      const [ra, rb] = await Promise.all([a.generateImages({ spec }), b.generateImages({ spec })]);
      expect(ra.images).toHaveLength(4);
      expect(ra.checkpoint?.id).toBe("runs/s/base");
      const ia = imagesFromMessages(
        ra.images.map((g) => g.image!),
        { field: "a", size: S },
      );
      const ib = imagesFromMessages(
        rb.images.map((g) => g.image!),
        { field: "b", size: S },
      );
      expect(maxAbs(ia.data, ib.data)).toBeLessThan(TOL);
      expect((await a.getModel({})).backend).toMatch(/^sidecar /);
      expect((await sidecar.client.describeModel({})).checkpoint?.id).toBe("runs/s/base");
      // A wrong-kind checkpoint is refused by the Generator and leaves its policy in place.
      await expect(a.loadCheckpoint({ checkpointId: "runs/s/improver" })).rejects.toThrow(
        /holds a improver model/,
      );
      expect((await a.getModel({})).checkpoint?.id).toBe("runs/s/base");
    } finally {
      await viaSidecar.close();
      await inProcess.close();
      await sidecar.server.close();
    }
  });

  it("improves (double guidance, SDEdit) as the in-process improver does", async () => {
    const sidecar = await startSidecar();
    const env = { IDPO_IMPROVER_CHECKPOINT: "runs/s/improver" };
    const viaSidecar = await startService(
      improverDefinition({ bus, checkpoints: store, inferenceTransport: sidecar.transport }),
      ImproverService,
      { ...env, IDPO_INFERENCE: "sidecar" },
    );
    const inProcess = await startService(
      improverDefinition({ bus, checkpoints: store }),
      ImproverService,
      env,
    );
    try {
      const data = new Float32Array(3 * S * S * 3).map((_, i) => 0.5 + 0.4 * Math.sin(0.21 * i));
      const req = create(ImproveImagesRequestSchema, {
        images: imagesToMessages({ n: 3, height: S, width: S, channels: 3, data }, ImageFormat.TENSOR),
        prompts: [PROMPTS[0]],
        steps: 5,
        seed: 9n,
        strength: 0.6,
        outputFormat: ImageFormat.TENSOR,
      });
      const [ra, rb] = await Promise.all([
        createClient(ImproverService, viaSidecar.transport).improveImages(req),
        createClient(ImproverService, inProcess.transport).improveImages(req),
      ]);
      const ia = imagesFromMessages(ra.images, { field: "a", size: S });
      const ib = imagesFromMessages(rb.images, { field: "b", size: S });
      expect(maxAbs(ia.data, ib.data)).toBeLessThan(TOL);
      expect(ra.checkpoint?.id).toBe("runs/s/improver");
    } finally {
      await viaSidecar.close();
      await inProcess.close();
      await sidecar.server.close();
    }
  });
});

describe("the Trainer's SPIN losers through the inference sidecar", () => {
  it("samples them from the reference checkpoint on the sidecar, with the in-process job's metrics", async () => {
    const requests: SampleImagesRequest[] = [];
    const record: Interceptor = (next) => async (req) => {
      if (req.method.name === "SampleImages") requests.push(req.message as SampleImagesRequest);
      return next(req);
    };
    const sidecar = await startSidecar([record]);
    const dataDir = await mkdtemp(join(tmpdir(), "idpo-spin-sidecar-"));
    const env = {
      IDPO_DATA_DIR: dataDir,
      IDPO_TRAIN_WORKERS: "1",
      IDPO_TRAINER_PROGRESS_EVERY: "1",
      IDPO_TRAINER_SPIN_STEPS: "4",
    };
    const viaSidecar = await startService(
      trainerDefinition({ bus, inferenceTransport: sidecar.transport }),
      TrainerService,
      { ...env, IDPO_INFERENCE: "sidecar" },
    );
    const inProcess = await startService(trainerDefinition({ bus }), TrainerService, env);
    const run = async (transport: typeof viaSidecar.transport, jobId: string): Promise<Job> => {
      const client = createClient(TrainerService, transport);
      await client.startJob({
        spec: {
          jobId,
          kind: JobKind.SPIN,
          data: ["shapes://?pairs=12&size=16&seed=3"],
          initCheckpointId: "runs/s/base",
          training: { steps: 2, batchSize: 3, seed: 4n, learningRate: 1e-3 },
        },
      });
      for (let i = 0; i < 6000; i++) {
        const job = (await client.getJob({ jobId })).job!;
        if (job.state === JobState.SUCCEEDED || job.state === JobState.FAILED) return job;
        await new Promise((r) => setTimeout(r, 20));
      }
      throw new Error(`job ${jobId} did not end`);
    };
    try {
      const a = await run(viaSidecar.transport, "spin-sidecar");
      const b = await run(inProcess.transport, "spin-in-process");
      expect(a.error, a.error).toBe("");
      expect(b.state).toBe(JobState.SUCCEEDED);
      // Two steps of 3 pairs, each loser sampled from the reference checkpoint with the job's sampler.
      expect(requests.map((r) => r.checkpointId)).toEqual(["runs/s/base", "runs/s/base"]);
      expect(requests.map((r) => r.prompts.length)).toEqual([3, 3]);
      expect(requests.every((r) => r.steps === 4)).toBe(true);
      // raw_model_loss is the policy's ε-MSE on winners and losers: other losers move it by far more.
      expect(a.history.map((p) => p.step)).toEqual([1, 2]);
      for (const [pa, pb] of a.history.map((p, i) => [p, b.history[i]] as const)) {
        for (const m of ["raw_model_loss", "ref_loss", "loss"]) {
          expect(Math.abs(pa.metrics[m] - pb.metrics[m])).toBeLessThan(1e-3 * Math.abs(pb.metrics[m]));
        }
      }
    } finally {
      await viaSidecar.close();
      await inProcess.close();
      await sidecar.server.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
