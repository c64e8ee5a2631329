import type { Bus, Subscription } from "@idpo/bus";
import type { ModelKind as DiffusionModelKind } from "@idpo/diffusion";
import { type CheckpointRef, ModelKind } from "@idpo/proto";
import type { Logger } from "@idpo/runtime";
import type { CheckpointStore } from "./checkpoint-store.js";
import { type LoadedModel, ModelSlot } from "./model-slot.js";
import { replicaConsumerName, subscribeCheckpointPublished } from "./run-events.js";
import { inProcessEngine, type SamplingEngine, type ServedModel } from "./sampling-engine.js";

/** What a model host is built from. */
export interface ModelHostOptions {
  /** The kind of checkpoint the service serves. */
  kind: DiffusionModelKind;
  /** Loads checkpoints (in-process tfjs or the inference sidecar). */
  engine: SamplingEngine;
  /** Checkpoint loaded at start; none when undefined. */
  startupCheckpoint?: string;
  /** Event log to follow checkpoint.published on; without it the host loads only when asked. */
  bus?: Pick<Bus, "events">;
  /** Durable consumer name of the checkpoint subscription (unique per replica). */
  consumerName?: string;
  logger: Logger;
  /** Health: SERVING once weights are loaded. */
  setServing(serving: boolean): void;
}

/** The weights-serving half of the Generator and the Improver. */
export interface ModelHost {
  /** The current model; requests lease it so a swap never pulls weights from under them. */
  slot: ModelSlot<ServedModel>;
  /** Loads a checkpoint of the host's kind without installing it (for `slot.loadAndAcquire`). */
  loadModel(id: string): Promise<LoadedModel<ServedModel>>;
  /** Loads checkpoint `id` and makes it current; resolves to its reference. */
  loadCheckpoint(id: string): Promise<CheckpointRef>;
  /** Settles when the start-up checkpoint (if any) has loaded or failed to. */
  ready: Promise<void>;
  /** What GetModel answers: the current checkpoint, its config as JSON and the engine. */
  describe(): { checkpoint?: CheckpointRef; configJson: string; backend: string };
  /** Stops following checkpoints, waits for the start-up load and releases the weights once unleased. */
  close(): Promise<void>;
}

/**
 * Serves one kind of checkpoint: loads the start-up checkpoint in the background (health NOT_SERVING
 * until weights are loaded), reloads on final checkpoint.published events of its kind, and swaps
 * models atomically (ModelSlot).
 */
export async function createModelHost(opts: ModelHostOptions): Promise<ModelHost> {
  const { kind, engine, logger } = opts;
  const slot = new ModelSlot<ServedModel>(
    (m) => m.dispose(),
    (ref) => {
      logger.info(`${kind} weights loaded`, {
        checkpoint: ref.id,
        step: Number(ref.step),
        engine: engine.description,
      });
      opts.setServing(true);
    },
  );
  opts.setServing(false);
  const loadModel = (id: string) => engine.load(id, kind);
  const loadCheckpoint = (id: string) => slot.load(id, loadModel);

  let subscription: Subscription | undefined;
  if (opts.bus) {
    const want = kind === "policy" ? ModelKind.POLICY : ModelKind.IMPROVER;
    subscription = await subscribeCheckpointPublished(opts.bus, {
      consumer: opts.consumerName ?? replicaConsumerName(kind),
      onCheckpoint: async (published) => {
        const ref = published.checkpoint!;
        if (ref.kind !== want || !published.isFinal) return;
        logger.info(`checkpoint.published: loading ${kind}`, { checkpoint: ref.id, job: published.jobId });
        await loadCheckpoint(ref.id);
      },
    });
  }

  const ready = opts.startupCheckpoint
    ? loadCheckpoint(opts.startupCheckpoint).then(
        () => undefined,
        (err: unknown) =>
          logger.error(`could not load the start-up ${kind} checkpoint`, {
            checkpoint: opts.startupCheckpoint,
            error: (err as Error).message,
          }),
      )
    : Promise.resolve();

  return {
    slot,
    loadModel,
    loadCheckpoint,
    ready,
    describe() {
      const lease = slot.acquire();
      try {
        return {
          checkpoint: lease?.ref,
          configJson: lease ? JSON.stringify(lease.model.config) : "",
          backend: engine.description,
        };
      } finally {
        lease?.release();
      }
    },
    async close() {
      await subscription?.stop({ timeoutMs: 10_000 });
      await ready;
      slot.close();
    },
  };
}

/**
 * What a model-serving service (the Generator, the Improver) builds its host from: an engine, or a
 * checkpoint store to sample with tfjs in its own process.
 */
export interface ModelServiceDeps {
  /** The service's settings; `checkpointId` is loaded at start. */
  config: { checkpointId?: string };
  /** Loads checkpoints and samples them (tfjs in process, or the inference sidecar). */
  engine?: SamplingEngine;
  /** Without `engine`: where checkpoints are read from, to sample them with tfjs in this process. */
  checkpoints?: CheckpointStore;
  /** Without `engine`: the tfjs backend name GetModel reports. */
  backend?: string;
  /** Event log to follow checkpoint.published on; without it the host loads only when asked. */
  bus?: Pick<Bus, "events">;
  /** Durable consumer name of the checkpoint subscription (default: one per replica of `service`). */
  consumerName?: string;
  logger: Logger;
  /** Health: SERVING once weights are loaded. */
  setServing(serving: boolean): void;
}

/** The model host of a model-serving service named `service` (e.g. "generator"), serving `kind`. */
export async function createServiceModelHost(
  service: string,
  kind: DiffusionModelKind,
  deps: ModelServiceDeps,
): Promise<ModelHost> {
  const engine =
    deps.engine ?? (deps.checkpoints ? inProcessEngine(deps.checkpoints, deps.backend ?? "") : undefined);
  if (!engine) throw new Error(`${service}: give an engine or a checkpoint store`);
  return createModelHost({
    kind,
    engine,
    startupCheckpoint: deps.config.checkpointId,
    bus: deps.bus,
    consumerName: deps.consumerName ?? replicaConsumerName(service),
    logger: deps.logger,
    setServing: deps.setServing,
  });
}
