import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import {
  type Evaluation,
  EvaluationSchema,
  type GeneratedImage,
  GenerateImagesResponseSchema,
  GenerationSpecSchema,
  type Run,
  RunStage,
} from "@idpo/proto";
import type { StageContext } from "./driver-deps.js";
import { retryPeer, sampleCheckpoint } from "./peer-calls.js";
import { deriveSeed, samplesArtifact } from "./run-plan.js";
import { withStageSpan } from "./run-tracing.js";

/**
 * Evaluation of iteration k's checkpoint (0 = the base model): its samples scored by the Scorer, with the
 * base model's samples as the reference of the win-rate; recorded in the run once.
 */
export async function evaluateStage(ctx: StageContext, run: Run, k: number): Promise<void> {
  await ctx.writer.enterStage(
    RunStage.EVALUATE,
    k,
    k === 0 ? "evaluating the base model" : `iteration ${k}: evaluating`,
  );
  const evaluation = await withStageSpan(
    ctx.runId,
    "idpo.run.evaluate",
    { "idpo.stage": "evaluate", "idpo.iteration": k },
    () => evaluate(ctx, run, k),
  );
  await ctx.writer.commit((r) => {
    if (k === 0) {
      if (r.baseEvaluation) return false;
      r.baseEvaluation = evaluation;
      return true;
    }
    const it = r.iterations[k - 1];
    if (!it || it.evaluation) return false;
    it.evaluation = evaluation;
    return true;
  });
}

async function evaluate(ctx: StageContext, run: Run, k: number): Promise<Evaluation> {
  const cfg = run.config!;
  const baseId = run.baseCheckpoint!.id;
  const checkpointId = k === 0 ? baseId : run.iterations[k - 1].checkpoint!.id;
  const samples = await evaluationSamples(ctx, run, k, checkpointId);
  const reference = k === 0 ? undefined : await evaluationSamples(ctx, run, 0, baseId);
  const res = await retryPeer(ctx, "Evaluate", () =>
    ctx.deps.peers.scorer.evaluate(
      {
        images: samples.map((s) => s.image!),
        prompts: samples.map((s) => cfg.evalPrompts[s.promptIndex]),
        referenceImages: reference ? reference.map((s) => s.image!) : [],
        runId: ctx.runId,
        iteration: k,
        label: k === 0 ? "base" : "policy",
        checkpointId,
      },
      { signal: ctx.signal },
    ),
  );
  return create(EvaluationSchema, {
    reward: res.reward,
    vendi: res.vendi,
    winRateVsBase: k === 0 ? undefined : res.winRate,
    checkpointId,
  });
}

/**
 * The evaluation samples of checkpoint `checkpointId` (iteration k; 0 = base): the run's eval prompts ×
 * eval_samples_per_prompt with seeds fixed by the run seed, so every model is sampled with the same noise.
 * Stored as an artifact, so a resumed controller (and later iterations' win-rates) reuse them.
 */
async function evaluationSamples(
  ctx: StageContext,
  run: Run,
  k: number,
  checkpointId: string,
): Promise<GeneratedImage[]> {
  const cfg = run.config!;
  const { artifacts } = ctx.deps.bus;
  const name = samplesArtifact(ctx.runId, k);
  const expected = cfg.evalPrompts.length * cfg.evalSamplesPerPrompt;
  const stored = await artifacts.get(name);
  if (stored) {
    const res = fromBinary(GenerateImagesResponseSchema, stored);
    if (res.checkpoint?.id === checkpointId && res.images.length === expected) return res.images;
  }
  const spec = create(GenerationSpecSchema, {
    prompts: cfg.evalPrompts,
    imagesPerPrompt: cfg.evalSamplesPerPrompt,
    seed: BigInt(deriveSeed(cfg.seed, "eval")),
    steps: cfg.samplingSteps,
    guidanceScale: cfg.guidanceScale,
    checkpointId,
  });
  const model = k === 0 ? "base model" : `iteration ${k}`;
  const { images, checkpoint } = await sampleCheckpoint(ctx, spec, expected, (done, total) =>
    ctx.writer.progress(RunStage.EVALUATE, k, {
      done,
      total,
      eta: 0,
      message: `${model}: sampling ${done}/${total} evaluation images`,
    }),
  );
  images.sort((a, b) => a.promptIndex - b.promptIndex || Number(a.seed - b.seed));
  const res = create(GenerateImagesResponseSchema, { images, checkpoint });
  await artifacts.put(name, toBinary(GenerateImagesResponseSchema, res), {
    meta: { run_id: ctx.runId, iteration: String(k), checkpoint_id: checkpointId },
  });
  return images;
}
