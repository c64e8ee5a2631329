import type { MessageInitShape } from "@bufbuild/protobuf";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { type Bus, publishRunEvent } from "@idpo/bus";
import { batchImage, type Image, type ImageBatch } from "@idpo/data";
import { imagesFromMessages, sharedBus } from "@idpo/mesh";
import { type EvalItem, evaluateSet, InvalidItemError, type MeanCI, scoreImages } from "@idpo/metrics";
import {
  type EstimateSchema,
  type EvaluateRequest,
  type EvaluateResponse,
  EvaluateResponseSchema,
  type ScoreRequest,
  ScoreResponseSchema,
  ScorerService,
} from "@idpo/proto";
import { envInt, type Logger, type ServiceDefinition } from "@idpo/runtime";

/** Scorer settings (from the environment). */
export interface ScorerConfig {
  /** Most images per request (IDPO_SCORER_MAX_IMAGES, default 4096). */
  maxImages: number;
  /** Required image side, or 0 for any square size in [8, 256] (IDPO_SCORER_IMAGE_SIZE, default 0). */
  imageSize: number;
}

function toImages(batch: ImageBatch): Image[] {
  const out: Image[] = [];
  for (let i = 0; i < batch.n; i++) out.push(batchImage(batch, i));
  return out;
}

function checkCounts(field: string, images: number, prompts: number, max: number): void {
  if (images === 0) throw new ConnectError(`${field}: at least one image is required`, Code.InvalidArgument);
  if (images > max) {
    throw new ConnectError(
      `${field}: ${images} images is more than the limit of ${max}`,
      Code.InvalidArgument,
    );
  }
  if (prompts !== images) {
    throw new ConnectError(
      `prompts: ${prompts} prompts for ${images} images (need one per image)`,
      Code.InvalidArgument,
    );
  }
}

function asInvalid(err: unknown): never {
  if (err instanceof InvalidItemError) {
    const field =
      err.list === "images" && /prompt/i.test(err.message)
        ? `prompts[${err.index}]`
        : `${err.list}[${err.index}]`;
    throw new ConnectError(`${field}: ${err.message.replace(/^[a-z]+\[\d+\]: /, "")}`, Code.InvalidArgument);
  }
  throw err;
}

function estimate(ci: MeanCI): MessageInitShape<typeof EstimateSchema> {
  const half = Number.isFinite(ci.halfWidth) ? ci.halfWidth : 0;
  return { mean: ci.mean, ci95Low: ci.mean - half, ci95High: ci.mean + half, n: ci.n };
}

/** The Scorer's RPC implementation; `bus` is used only to publish eval.completed. */
export function scorerRoutes(config: ScorerConfig, getBus: () => Promise<Bus>, logger?: Logger) {
  const readImages = (field: string, req: { images: ScoreRequest["images"] }) =>
    readSquareImages(config, field, req.images);
  return (router: ConnectRouter) =>
    router.service(ScorerService, {
      score(req: ScoreRequest) {
        checkCounts("images", req.images.length, req.prompts.length, config.maxImages);
        const images = readImages("images", req);
        let scores: ReturnType<typeof scoreImages>;
        try {
          scores = scoreImages(images, req.prompts);
        } catch (err) {
          asInvalid(err);
        }
        return create(ScoreResponseSchema, {
          scores: scores.map(({ reward, ...components }) => ({ reward, components })),
        });
      },

      async evaluate(req: EvaluateRequest) {
        const res = evaluateRequest(config, req);
        if (req.runId !== "") await publishEvalCompleted(await getBus(), req, res, logger);
        return res;
      },
    });
}

/** The images of a request field, square and of the configured size (or within 8–256 px when unset). */
function readSquareImages(config: ScorerConfig, field: string, images: ScoreRequest["images"]) {
  const limits =
    config.imageSize > 0 ? { field, size: config.imageSize } : { field, minSide: 8, maxSide: 256 };
  const batch = imagesFromMessages(images, limits);
  if (batch.height !== batch.width) {
    throw new ConnectError(
      `${field}[0]: image is ${batch.height}×${batch.width}, must be square`,
      Code.InvalidArgument,
    );
  }
  return toImages(batch);
}

/** Checks an Evaluate request and evaluates its set (against its reference images, when given). */
function evaluateRequest(config: ScorerConfig, req: EvaluateRequest) {
  if (req.runId !== "" && !/^[A-Za-z0-9_=:@-]{1,128}$/.test(req.runId)) {
    throw new ConnectError(
      `run_id ${JSON.stringify(req.runId)} is not valid: expected [A-Za-z0-9_=:@-]{1,128}`,
      Code.InvalidArgument,
    );
  }
  checkCounts("images", req.images.length, req.prompts.length, config.maxImages);
  const images = readSquareImages(config, "images", req.images);
  let reference: EvalItem[] | undefined;
  if (req.referenceImages.length > 0) {
    if (req.referenceImages.length !== req.images.length) {
      throw new ConnectError(
        `reference_images: ${req.referenceImages.length} reference images for ${req.images.length} images (need one per image)`,
        Code.InvalidArgument,
      );
    }
    const refs = readSquareImages(config, "reference_images", req.referenceImages);
    reference = refs.map((image, i) => ({ image, prompt: req.prompts[i], seed: i }));
  }
  const items: EvalItem[] = images.map((image, i) => ({ image, prompt: req.prompts[i], seed: i }));
  let ev: ReturnType<typeof evaluateSet>;
  try {
    ev = evaluateSet(items, { reference });
  } catch (err) {
    asInvalid(err);
  }
  return create(EvaluateResponseSchema, {
    reward: estimate(ev.reward),
    vendi: ev.vendi ?? 1,
    winRate: ev.winRate ? ev.winRate.winRate : undefined,
    perPrompt: ev.perPrompt.map((p) => ({
      prompt: p.prompt,
      reward: { mean: p.meanReward, ci95Low: p.meanReward, ci95High: p.meanReward, n: p.n },
      vendi: p.vendi ?? 1,
    })),
    components: ev.components,
  });
}

/** Publishes eval.completed for an Evaluate call that names its run. */
async function publishEvalCompleted(
  bus: Bus,
  req: EvaluateRequest,
  res: EvaluateResponse,
  logger: Logger | undefined,
): Promise<void> {
  const label = req.label || "policy";
  await publishRunEvent(bus.events, {
    eventId: `${req.runId}/eval/${req.iteration}/${label}`,
    runId: req.runId,
    payload: {
      case: "evalCompleted",
      value: {
        iteration: req.iteration,
        label,
        checkpointId: req.checkpointId,
        reward: res.reward,
        vendi: res.vendi,
        winRate: res.winRate,
      },
    },
  });
  logger?.info("eval.completed published", { runId: req.runId, iteration: req.iteration, label });
}

/** Dependencies a test (or an embedding program) can supply instead of the process-wide ones. */
export interface ScorerOverrides {
  /** Bus eval.completed is published on; default the process-wide `sharedBus()`. */
  bus?: Bus;
}

/** The Scorer's service definition, optionally over given dependencies. */
export function scorerDefinition(overrides: ScorerOverrides = {}): ServiceDefinition {
  return {
    name: "scorer",
    defaultPort: 50054,
    grpcServices: [ScorerService.typeName],
    create(ctx) {
      const config: ScorerConfig = {
        maxImages: envInt(ctx.env, "IDPO_SCORER_MAX_IMAGES", 4096, 1, 1_000_000),
        imageSize: envInt(ctx.env, "IDPO_SCORER_IMAGE_SIZE", 0, 0, 4096),
      };
      const bus = overrides.bus;
      const routes = scorerRoutes(config, bus ? async () => bus : sharedBus, ctx.logger);
      // It holds no weights, so it is ready at once.
      ctx.setServing(true);
      return { routes };
    },
  };
}

/** The Scorer (idpo.scorer.v1.ScorerService, port 50054): reward functions and evaluation. */
export const scorerService: ServiceDefinition = scorerDefinition();
