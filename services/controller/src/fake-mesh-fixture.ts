/**
 * Test fixture (used by the controller's unit tests only): small hand-written Trainer and Generator servers
 * that implement the protos with trivial "models", so the controller's own logic (state machine, idempotency,
 * resumption, failures) can be tested in milliseconds. The Scorer is the real one.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  createClient,
  createRouterTransport,
  type HandlerContext,
  type Transport,
} from "@connectrpc/connect";
import { type Bus, openBus, type Subscription } from "@idpo/bus";
import { solidImage, stackImages } from "@idpo/data";
import { CheckpointStore, imagesToMessages, pairShardMeta } from "@idpo/mesh";
import {
  type CheckpointRef,
  ControllerService,
  type GenerateImagesStreamRequest,
  GeneratorService,
  type Job,
  JobSchema,
  type JobSpec,
  JobSpecSchema,
  JobState,
  ModelKind,
  type PairShardTask,
  PairShardTaskSchema,
  RunEventSchema,
  ScorerService,
  TrainerService,
  type WatchJobRequest,
} from "@idpo/proto";
import { type BuiltServer, buildServer, createLogger, type ServiceDefinition } from "@idpo/runtime";
import { scorerRoutes } from "@idpo/scorer";
import { controllerDefinition } from "./controller-service.js";
import type { ControllerOptions, Peers } from "./driver-deps.js";

export const quietLogger = createLogger("error", {}, () => {});

/** A fake trainer: a job advances one step every `stepMs` and publishes a (fake) final checkpoint. */
export class FakeTrainer {
  readonly jobs = new Map<string, Job>();
  /** Every StartJob request, in order. */
  readonly starts: JobSpec[] = [];
  readonly cancels: string[] = [];
  /** Job ids that fail at their first step. */
  readonly failing = new Set<string>();
  private readonly listeners = new Set<() => void>();
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  /** Stops running jobs (at their next step). */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
  }

  constructor(
    private readonly checkpoints: CheckpointStore,
    private readonly stepMs = 2,
  ) {}

  private changed(): void {
    for (const l of [...this.listeners]) l();
  }

  private async execute(id: string): Promise<void> {
    const job = this.jobs.get(id)!;
    if (job.state !== JobState.QUEUED) return;
    job.state = JobState.RUNNING;
    this.changed();
    while (job.step < job.totalSteps) {
      await new Promise((r) => setTimeout(r, this.stepMs));
      if ((job.state as JobState) === JobState.CANCELLED || this.closed) return;
      if (this.failing.has(id)) {
        job.state = JobState.FAILED;
        job.error = "loss is NaN at step 1";
        this.changed();
        return;
      }
      job.step++;
      job.metrics = { loss: 1 / job.step, implicit_acc: 0.5 };
      job.etaSeconds = ((job.totalSteps - job.step) * this.stepMs) / 1000;
      this.changed();
    }
    const spec = job.spec!;
    const id2 = spec.outputCheckpointId || `jobs/${id}`;
    const bytes = new TextEncoder().encode(`weights of ${id2}`);
    job.finalCheckpoint = await this.checkpoints.put(
      {
        id: id2,
        kind: spec.kind === 2 ? ModelKind.IMPROVER : ModelKind.POLICY,
        step: job.step,
        parentId: spec.initCheckpointId,
        sha256: "0".repeat(64),
      },
      bytes,
    );
    job.state = JobState.SUCCEEDED;
    job.etaSeconds = 0;
    this.changed();
  }

  definition(): ServiceDefinition {
    return {
      name: "trainer",
      defaultPort: 0,
      grpcServices: [TrainerService.typeName],
      create: (ctx) => {
        ctx.setServing(true);
        return {
          routes: (router) =>
            router.service(TrainerService, {
              startJob: async (req) => {
                const spec = req.spec!;
                this.starts.push(clone(JobSpecSchema, spec));
                const existing = this.jobs.get(spec.jobId);
                if (existing) return { job: existing };
                const job = create(JobSchema, {
                  jobId: spec.jobId,
                  spec,
                  state: JobState.QUEUED,
                  totalSteps: spec.training?.steps ?? 1,
                  createTime: timestampNow(),
                });
                this.jobs.set(spec.jobId, job);
                this.queue = this.queue.then(() => this.execute(spec.jobId));
                return { job };
              },
              getJob: async (req) => {
                const job = this.jobs.get(req.jobId);
                if (!job) throw new ConnectError(`job_id: no job ${req.jobId}`, Code.NotFound);
                return { job };
              },
              listJobs: async () => ({ jobs: [...this.jobs.values()] }),
              watchJob: async function* (this: FakeTrainer, req: WatchJobRequest, ctx: HandlerContext) {
                const job = this.jobs.get(req.jobId);
                if (!job) throw new ConnectError(`job_id: no job ${req.jobId}`, Code.NotFound);
                let wake: (() => void) | undefined;
                const listener = () => wake?.();
                this.listeners.add(listener);
                try {
                  for (;;) {
                    const waiting = new Promise<void>((r) => {
                      wake = r;
                    });
                    yield { job: clone(JobSchema, job) };
                    if (job.state >= JobState.SUCCEEDED || ctx.signal.aborted) return;
                    await waiting;
                  }
                } finally {
                  this.listeners.delete(listener);
                }
              }.bind(this),
              cancelJob: async (req) => {
                const job = this.jobs.get(req.jobId);
                if (!job) throw new ConnectError(`job_id: no job ${req.jobId}`, Code.NotFound);
                this.cancels.push(req.jobId);
                if (job.state < JobState.SUCCEEDED) job.state = JobState.CANCELLED;
                this.changed();
                return { job };
              },
            }),
        };
      },
    };
  }
}

/**
 * A fake generator: works pair shards from the queue (stores a blob per shard, publishes pairs_ready) and
 * samples solid-colour images whose brightness encodes the checkpoint, so evaluations differ per model.
 */
export class FakeGenerator {
  loaded = "";
  /** Shard artifacts processed, in order (a shard processed twice appears twice). */
  readonly processed: string[] = [];
  /** Tasks received, in order. */
  readonly tasks: PairShardTask[] = [];
  private worker?: Subscription;
  /** Shards whose handler throws (to exercise shard_failed). */
  readonly failing = new Set<string>();

  constructor(private readonly bus: Bus) {}

  async startWorker(): Promise<void> {
    this.worker = await this.bus.work.consume(
      async (msg) => {
        const task = fromBinary(PairShardTaskSchema, msg.data);
        this.tasks.push(task);
        if (this.failing.has(task.outputArtifact)) throw new Error("improver unavailable");
        if (!(await this.bus.artifacts.info(task.outputArtifact))) {
          this.processed.push(task.outputArtifact);
          await this.bus.artifacts.put(task.outputArtifact, new Uint8Array(task.prompts.length), {
            meta: pairShardMeta({
              runId: task.runId,
              iteration: task.iteration,
              shardIndex: task.shardIndex,
              pairCount: task.prompts.length,
              policyCheckpointId: task.policyCheckpointId,
              improverCheckpointId: task.improverCheckpointId,
              meanPairDistance: 0,
            }),
          });
        }
        this.loaded = task.policyCheckpointId;
        const ev = create(RunEventSchema, {
          eventId: `${task.runId}/iter-${task.iteration}/pairs-ready/shard-${task.shardIndex}`,
          runId: task.runId,
          time: timestampNow(),
          payload: {
            case: "pairsReady",
            value: {
              iteration: task.iteration,
              shardIndex: task.shardIndex,
              artifact: task.outputArtifact,
              pairCount: task.prompts.length,
              policyCheckpointId: task.policyCheckpointId,
            },
          },
        });
        await this.bus.events.publish(`idpo.events.${task.runId}.pairs_ready`, toBinary(RunEventSchema, ev), {
          msgId: ev.eventId,
        });
      },
      { maxDeliver: 2, backoffMs: [10], ackWaitMs: 5_000 },
    );
  }

  async stopWorker(): Promise<void> {
    await this.worker?.stop({ timeoutMs: 1000 });
  }

  definition(): ServiceDefinition {
    const ref = (): CheckpointRef | undefined =>
      this.loaded ? ({ id: this.loaded } as CheckpointRef) : undefined;
    const images = (n: number) => {
      let h = 0;
      for (const ch of this.loaded) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
      const v = 0.2 + 0.6 * ((h % 1000) / 1000);
      const imgs = [];
      for (let i = 0; i < n; i++) imgs.push(solidImage(16, 16, [v, 1 - v, 0.5]));
      return imgs;
    };
    return {
      name: "generator",
      defaultPort: 0,
      grpcServices: [GeneratorService.typeName],
      create: (ctx) => {
        ctx.setServing(true);
        return {
          routes: (router) =>
            router.service(GeneratorService, {
              generateImages: async () => {
                throw new ConnectError("use the stream", Code.Unimplemented);
              },
              generateImagesStream: async function* (this: FakeGenerator, req: GenerateImagesStreamRequest) {
                const spec = req.spec!;
                if (spec.checkpointId && spec.checkpointId !== this.loaded) {
                  throw new ConnectError(
                    `checkpoint ${spec.checkpointId} is not loaded`,
                    Code.FailedPrecondition,
                  );
                }
                const per = spec.imagesPerPrompt || 1;
                const n = spec.prompts.length * per;
                const msgs = imagesToMessages(stackImages(images(n)));
                const out = msgs.map((image, i) => ({
                  image,
                  promptIndex: Math.floor(i / per),
                  seed: spec.seed + BigInt(i),
                }));
                yield { images: out, checkpoint: ref(), done: n, total: n };
              }.bind(this),
              getModel: async () => ({ checkpoint: ref() }),
              loadCheckpoint: async (req) => {
                this.loaded = req.checkpointId;
                return { checkpoint: ref() };
              },
            }),
        };
      },
    };
  }
}

/** An in-memory mesh: embedded bus in a temp dir, fake trainer and generator, real scorer, controllers. */
export class FakeMesh {
  readonly dir = mkdtempSync(join(tmpdir(), "idpo-ctrl-"));
  bus!: Bus;
  checkpoints!: CheckpointStore;
  trainer!: FakeTrainer;
  generator!: FakeGenerator;
  peers!: Peers;
  private readonly built: BuiltServer[] = [];
  private readonly controllers: BuiltServer[] = [];

  async start(opts: { stepMs?: number } = {}): Promise<this> {
    this.bus = await openBus({ backend: "embedded", dataDir: this.dir, limits: { backoffMs: [20] } });
    this.checkpoints = new CheckpointStore(this.bus.artifacts);
    this.trainer = new FakeTrainer(this.checkpoints, opts.stepMs ?? 2);
    this.generator = new FakeGenerator(this.bus);
    await this.generator.startWorker();
    const env = { IDPO_LOG_LEVEL: "error" };
    const t = await buildServer(this.trainer.definition(), { env, logger: quietLogger });
    const g = await buildServer(this.generator.definition(), { env, logger: quietLogger });
    const bus = this.bus;
    const scorer: ServiceDefinition = {
      name: "scorer",
      defaultPort: 0,
      grpcServices: [ScorerService.typeName],
      create: (ctx) => {
        ctx.setServing(true);
        return { routes: scorerRoutes({ maxImages: 4096, imageSize: 0 }, async () => bus) };
      },
    };
    const s = await buildServer(scorer, { env, logger: quietLogger });
    this.built.push(t, g, s);
    const transport = (b: BuiltServer): Transport =>
      createRouterTransport(b.routes, { router: b.routerOptions });
    this.peers = {
      trainer: createClient(TrainerService, transport(t)),
      generator: createClient(GeneratorService, transport(g)),
      scorer: createClient(ScorerService, transport(s)),
    };
    return this;
  }

  /** Starts a controller on the mesh's bus and returns its client (and the built server, to stop it). */
  async controller(options: Partial<ControllerOptions> = {}) {
    const bus = this.bus;
    const def = controllerDefinition({
      bus: async () => bus,
      peers: this.peers,
      options: { progressIntervalMs: 50, loadWaitMs: 20, jobPollMs: 10, peerRetryMs: 5_000, ...options },
    });
    const built = await buildServer(def, { env: { IDPO_LOG_LEVEL: "error" }, logger: quietLogger });
    this.controllers.push(built);
    const client = createClient(
      ControllerService,
      createRouterTransport(built.routes, { router: built.routerOptions }),
    );
    return {
      client,
      built,
      stop: async () => {
        built.beginShutdown();
        await built.instance.close?.();
      },
    };
  }

  async close(): Promise<void> {
    for (const c of this.controllers) {
      c.beginShutdown();
      await c.instance.close?.();
    }
    await this.generator.stopWorker();
    await this.trainer.close();
    for (const b of this.built) {
      b.beginShutdown();
      await b.instance.close?.();
    }
    await this.bus.close({ timeoutMs: 1000 });
    rmSync(this.dir, { recursive: true, force: true });
  }
}
