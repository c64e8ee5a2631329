import { createWriteStream, mkdirSync } from "node:fs";
import { join } from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import { DEFAULT_CONTROLLER_OPTIONS, type PeerCallContext, runTrainerJob } from "@idpo/controller";
import type { ImageBatch } from "@idpo/data";
import { followRun, startLocalMesh } from "@idpo/local-mesh";
import { CheckpointStore, imagesFromMessages, imagesToMessages, sharedBus } from "@idpo/mesh";
import {
  type CheckpointRef,
  CheckpointRefSchema,
  ControllerService,
  type GeneratedImage,
  GeneratedImageSchema,
  GenerateImagesResponseSchema,
  GenerationSpecSchema,
  GeneratorService,
  ImageFormat,
  type Image as ImageMessage,
  ImproverService,
  type Job,
  type JobSpec,
  JobState,
  type Run,
  type RunConfig,
  RunState,
  runStateEnded,
  ScorerService,
  TrainerService,
} from "@idpo/proto";
import { createLogger, createPeerTransport, type Logger, type MeshService } from "@idpo/runtime";
import { formatDuration } from "./stage-runner.js";

/** Clients of the five services. */
export interface MeshClients {
  trainer: Client<typeof TrainerService>;
  generator: Client<typeof GeneratorService>;
  improver: Client<typeof ImproverService>;
  scorer: Client<typeof ScorerService>;
  controller: Client<typeof ControllerService>;
}

/** Progress output (stderr in the CLI). */
export type Progress = (line: string) => void;

/** Smallest interval between two progress lines of one job or run, ms. */
const PROGRESS_EVERY_MS = 15_000;

/** Most images per Generate/Improve/Score call the benchmark makes (below every service's limit). */
const CHUNK = 256;

/** The five services in this process on loopback ports (embedded bus under the data dir), with clients. */
export class BenchMesh {
  private constructor(
    readonly clients: MeshClients,
    readonly bus: Bus,
    private readonly stop: () => Promise<void>,
    private readonly progress: Progress,
    /** Where the services' JSON logs go. */
    readonly logFile: string,
    /** Address of each service (for the dashboard). */
    readonly urls: Record<MeshService, string>,
    /** Where retries of peer calls are logged (the services' log). */
    private readonly logger: Logger,
  ) {}

  /** Starts the mesh like `idpo quickstart` does; service logs go to `<dataDir>/services.log`. */
  static async start(dataDir: string, progress: Progress): Promise<BenchMesh> {
    mkdirSync(dataDir, { recursive: true });
    const logFile = join(dataDir, "services.log");
    const log = createWriteStream(logFile, { flags: "a" });
    const logger = createLogger("info", {}, (line) => log.write(`${line}\n`));
    const mesh = await startLocalMesh({ dataDir, logger, serviceName: "idpo-bench" });
    const clients: MeshClients = {
      trainer: createClient(TrainerService, createPeerTransport(mesh.urls.trainer)),
      generator: createClient(GeneratorService, createPeerTransport(mesh.urls.generator)),
      improver: createClient(ImproverService, createPeerTransport(mesh.urls.improver)),
      scorer: createClient(ScorerService, createPeerTransport(mesh.urls.scorer)),
      controller: createClient(ControllerService, createPeerTransport(mesh.urls.controller)),
    };
    const bus = await sharedBus();
    const stop = async () => {
      await mesh.shutdown();
      await new Promise<void>((resolve) => log.end(resolve));
    };
    return new BenchMesh(clients, bus, stop, progress, logFile, mesh.urls, logger);
  }

  /** Stops every service and closes the bus. */
  async shutdown(): Promise<void> {
    await this.stop();
  }

  /**
   * The content hash (SHA-256 of the tensor data) of checkpoint `id` in the artifact store: what a stage
   * that reads the checkpoint depends on, whatever its id.
   */
  async checkpointSha(id: string): Promise<string> {
    const ref = await new CheckpointStore(this.bus.artifacts).ref(id);
    if (!ref?.sha256) throw new Error(`checkpoint ${JSON.stringify(id)} is not in the artifact store`);
    return ref.sha256;
  }

  /** The compute backend the generator reports (e.g. "wasm"). */
  async backend(): Promise<string> {
    return (await this.clients.generator.getModel({})).backend;
  }

  /**
   * Submits a trainer job (idempotent on its id: a resumed benchmark re-attaches to it, and the trainer
   * resumes it from its last checkpoint) and follows it to its end with progress lines, as the controller's
   * stages do (the controller's own follower, with its timings).
   */
  async runJob(spec: JobSpec, label: string): Promise<Job> {
    let last = 0;
    const started = Date.now();
    const ctx: PeerCallContext = {
      runId: label,
      deps: { peers: this.clients, options: DEFAULT_CONTROLLER_OPTIONS, logger: this.logger },
      signal: new AbortController().signal,
    };
    const job = await runTrainerJob(ctx, spec, label, async (job) => {
      const now = Date.now();
      if (now - last < PROGRESS_EVERY_MS || job.state !== JobState.RUNNING) return;
      last = now;
      const loss = job.metrics.loss;
      const acc = job.metrics.implicit_acc;
      this.progress(
        `  ${label}: step ${job.step}/${job.totalSteps}` +
          (loss !== undefined ? `, loss ${loss.toPrecision(4)}` : "") +
          (acc !== undefined ? `, implicit_acc ${acc.toFixed(2)}` : "") +
          (job.etaSeconds > 0 ? `, ETA ${formatDuration(job.etaSeconds)}` : ""),
      );
    });
    this.progress(`  ${label}: done, ${job.step} steps in ${formatDuration((Date.now() - started) / 1000)}`);
    return job;
  }

  /** Creates a controller run (idempotent on its id) and follows it to its end with progress lines. */
  async runController(runId: string, config: RunConfig, label: string): Promise<Run> {
    const { controller } = this.clients;
    let run = (await controller.createRun({ runId, config })).run!;
    let last = 0;
    let lastMessage = "";
    const onUpdate = (update: Run) => {
      const now = Date.now();
      const msg = update.progress?.message ?? "";
      if (
        msg !== "" &&
        (now - last >= PROGRESS_EVERY_MS || msg.split(":")[0] !== lastMessage.split(":")[0])
      ) {
        last = now;
        lastMessage = msg;
        const eta = update.progress?.etaSeconds ?? 0;
        this.progress(`  ${label}: ${msg}${eta > 0 ? `, ETA ${formatDuration(eta)}` : ""}`);
      }
    };
    // A resumed benchmark may find its run ended. A watch that breaks because the controller is unreachable,
    // or ends before the run, is opened again after a GetRun until the run ends.
    if (!runStateEnded(run.state)) {
      run = await followRun(controller, runId, {
        initial: run,
        onUpdate,
        attempts: Number.POSITIVE_INFINITY,
        retryOn: (err) => err instanceof ConnectError && err.code === Code.Unavailable,
        retryDelayMs: 2000,
        refresh: true,
      });
    }
    if (run.state !== RunState.SUCCEEDED) {
      throw new Error(
        `${label}: run ${runId} ${RunState[run.state].toLowerCase()}: ${run.error || "no reason given"}`,
      );
    }
    return run;
  }

  /**
   * Samples `prompts × perPrompt` images from a policy checkpoint with the Generator's seed rule (image j of
   * prompt i uses seed + i·perPrompt + j), prompt-major; the result is stored as an artifact
   * (GenerateImagesResponse) and reused when present.
   */
  async sample(
    checkpointId: string,
    prompts: readonly string[],
    perPrompt: number,
    seed: number,
    sampling: { steps: number; guidanceScale: number },
    artifact: string,
  ): Promise<ImageBatch> {
    const cached = await this.loadImages(artifact, checkpointId, prompts.length * perPrompt);
    if (cached) return cached;
    const { generator } = this.clients;
    const images: GeneratedImage[] = [];
    let checkpoint: CheckpointRef | undefined;
    // Whole prompts per call (at most CHUNK images), with explicit seeds so chunking does not change them.
    const perCall = Math.max(1, Math.floor(CHUNK / perPrompt));
    for (let p0 = 0; p0 < prompts.length; p0 += perCall) {
      const chunk = prompts.slice(p0, p0 + perCall);
      const seeds: bigint[] = [];
      for (let i = 0; i < chunk.length; i++) {
        for (let j = 0; j < perPrompt; j++) seeds.push(BigInt(seed + (p0 + i) * perPrompt + j));
      }
      const spec = create(GenerationSpecSchema, {
        prompts: chunk,
        imagesPerPrompt: perPrompt,
        seeds,
        steps: sampling.steps,
        guidanceScale: sampling.guidanceScale,
        outputFormat: ImageFormat.TENSOR,
        checkpointId,
      });
      for (let attempt = 0; ; attempt++) {
        try {
          const res = await generator.generateImages({ spec });
          images.push(...res.images);
          checkpoint = res.checkpoint;
          break;
        } catch (err) {
          // The generator holds another checkpoint (it follows checkpoint.published): load ours and retry.
          if (!(err instanceof ConnectError) || err.code !== Code.FailedPrecondition || attempt >= 5)
            throw err;
          await generator.loadCheckpoint({ checkpointId });
        }
      }
    }
    const res = create(GenerateImagesResponseSchema, { images, checkpoint });
    await this.bus.artifacts.put(artifact, toBinary(GenerateImagesResponseSchema, res), {
      meta: { checkpoint_id: checkpointId, checkpoint_sha256: await this.checkpointSha(checkpointId) },
    });
    return toBatch(images.map((g) => g.image!));
  }

  /** Stores a batch as an artifact (a GenerateImagesResponse of FLOAT32 tensors naming `checkpointId`). */
  async storeImages(name: string, batch: ImageBatch, checkpointId: string): Promise<void> {
    const images = imagesToMessages(batch, ImageFormat.TENSOR).map((image) =>
      create(GeneratedImageSchema, { image }),
    );
    const res = create(GenerateImagesResponseSchema, {
      images,
      checkpoint: create(CheckpointRefSchema, { id: checkpointId }),
    });
    await this.bus.artifacts.put(name, toBinary(GenerateImagesResponseSchema, res), {
      meta: { checkpoint_id: checkpointId, checkpoint_sha256: await this.checkpointSha(checkpointId) },
    });
  }

  /**
   * A batch stored by `sample` or `storeImages`, when it exists and was made with `n` images by checkpoint
   * `checkpointId` as it is now (a checkpoint trained again under the same id has another content hash).
   */
  async loadImages(name: string, checkpointId: string, n: number): Promise<ImageBatch | undefined> {
    const info = await this.bus.artifacts.info(name);
    if (!info || info.meta?.checkpoint_sha256 !== (await this.checkpointSha(checkpointId))) return undefined;
    const stored = await this.bus.artifacts.get(name);
    if (!stored) return undefined;
    const res = fromBinary(GenerateImagesResponseSchema, stored);
    if (res.checkpoint?.id !== checkpointId || res.images.length !== n) return undefined;
    return toBatch(res.images.map((g) => g.image!));
  }

  /** Improves each image for its prompt with an improver checkpoint (image i uses seed + i). */
  async improve(
    improverId: string,
    images: ImageBatch,
    prompts: readonly string[],
    seed: number,
    sampling: { steps: number; textGuidance: number; imageGuidance: number; strength?: number },
  ): Promise<ImageBatch> {
    const { improver } = this.clients;
    if (prompts.length !== images.n)
      throw new Error(`improve: ${images.n} images but ${prompts.length} prompts`);
    await improver.loadCheckpoint({ checkpointId: improverId });
    const msgs = imagesToMessages(images, ImageFormat.TENSOR);
    const out: ImageMessage[] = [];
    for (let s = 0; s < msgs.length; s += CHUNK) {
      const res = await improver.improveImages({
        images: msgs.slice(s, s + CHUNK),
        prompts: prompts.slice(s, s + CHUNK),
        textGuidanceScale: sampling.textGuidance,
        imageGuidanceScale: sampling.imageGuidance,
        strength: sampling.strength,
        steps: sampling.steps,
        seed: BigInt(seed + s),
        outputFormat: ImageFormat.TENSOR,
      });
      if (res.checkpoint?.id !== improverId) {
        throw new Error(
          `improve: the improver answered with ${res.checkpoint?.id ?? "no checkpoint"}, not ${improverId}`,
        );
      }
      out.push(...res.images);
    }
    return toBatch(out);
  }

  /**
   * Scores a set through the Scorer: per-image rewards (Score) and the set evaluation (Evaluate: Vendi per
   * prompt averaged, component means, and the win-rate against `reference` when given).
   */
  async score(
    images: ImageBatch,
    prompts: readonly string[],
    reference?: ImageBatch,
  ): Promise<{ rewards: number[]; vendi: number; winRate?: number; components: Record<string, number> }> {
    const { scorer } = this.clients;
    const msgs = imagesToMessages(images, ImageFormat.TENSOR);
    const rewards: number[] = [];
    for (let s = 0; s < msgs.length; s += CHUNK) {
      const res = await scorer.score({
        images: msgs.slice(s, s + CHUNK),
        prompts: prompts.slice(s, s + CHUNK),
      });
      for (const sc of res.scores) rewards.push(sc.reward);
    }
    const ev = await scorer.evaluate({
      images: msgs,
      prompts: [...prompts],
      referenceImages: reference ? imagesToMessages(reference, ImageFormat.TENSOR) : [],
    });
    const c = ev.components;
    return {
      rewards,
      vendi: ev.vendi,
      winRate: ev.winRate,
      components: c
        ? { color: c.color, bg: c.bg, shape: c.shape, size: c.size, center: c.center, clean: c.clean }
        : {},
    };
  }
}

function toBatch(images: readonly ImageMessage[]): ImageBatch {
  return imagesFromMessages(images, { field: "images" });
}
