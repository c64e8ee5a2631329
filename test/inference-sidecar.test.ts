import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
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
} from "@idpo/proto";
import { buildServer, type ServiceDefinition } from "@idpo/runtime";
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

async function startSidecar() {
  const server = await createInferenceServer({
    config: { ...inferenceConfigFromEnv({}), threads: 1 },
    checkpoints: store,
    logger: memoryLogger(),
    setServing: () => {},
  });
  const transport = createRouterTransport((router) => server.routes(router));
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
