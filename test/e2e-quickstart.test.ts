/**
 * `idpo quickstart`'s machinery on a tiny run (the whole mesh in this process, embedded bus, real gRPC on
 * loopback): the report folder, and one trace per run that links the services' spans (tracing with an
 * in-memory exporter).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { runTraceId } from "@idpo/controller";
import { decodePng } from "@idpo/data";
import { RunConfigSchema, RunState } from "@idpo/proto";
import { initTracing, shutdownTracing } from "@idpo/runtime";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type QuickstartResult, runQuickstart } from "../cli/src/quickstart/run-quickstart.js";

const EVAL_PROMPTS = [
  "a small red circle on a black background",
  "a large green square on a navy background",
];

describe("quickstart (in-process mesh) and run tracing", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-qs-test-"));
  const exporter = new InMemorySpanExporter();
  let result: QuickstartResult;
  let spans: ReadableSpan[] = [];
  let progress = "";

  beforeAll(async () => {
    initTracing({ serviceName: "idpo-test", exporter });
    const config = create(RunConfigSchema, {
      name: "quickstart-test",
      dataset: "shapes://?pairs=128&size=16&seed=2",
      modelPreset: "tiny",
      baseTraining: { steps: 16, batchSize: 8 },
      improverTraining: { steps: 16, batchSize: 8 },
      policyTraining: { steps: 4, batchSize: 4 },
      iterations: 1,
      pairsPerIteration: 8,
      shardSize: 4,
      samplingSteps: 4,
      evalPrompts: EVAL_PROMPTS,
      evalSamplesPerPrompt: 2,
      seed: 5n,
    });
    result = await runQuickstart(
      { iterations: 1, pairs: 8, seed: 5, out: join(dir, "report"), dataDir: join(dir, "data"), config },
      { err: (t) => (progress += t), tty: false },
    );
    // Flush the batch span processor, then read everything it exported.
    await new Promise((r) => setTimeout(r, 500));
    spans = [...exporter.getFinishedSpans()];
  }, 300_000);

  afterAll(async () => {
    await shutdownTracing();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs to SUCCEEDED with live progress and writes the report folder", () => {
    expect(result.run.state, result.run.error).toBe(RunState.SUCCEEDED);
    expect(progress).toMatch(/base · \d+\/16/);
    expect(progress).toMatch(/loss \d/);
    expect(progress).toContain("generate · iteration 1/1");
    expect(result.reportDir).toBe(join(dir, "report"));
    expect(readFileSync(join(dir, "report", "services.log"), "utf8")).toContain('"msg":"run succeeded"');
    for (const f of [
      "metrics.json",
      "rewards.txt",
      "rewards.png",
      "pairs-iter-1.png",
      "samples.png",
      "services.log",
    ]) {
      expect(existsSync(join(dir, "report", f)), f).toBe(true);
    }
    const metrics = JSON.parse(readFileSync(join(dir, "report", "metrics.json"), "utf8"));
    expect(metrics.run.runId).toBe(result.run.runId);
    expect(metrics.run.iterations[0].evaluation.reward.n).toBe(EVAL_PROMPTS.length * 2);
    expect(metrics.stages.map((s: { stage: string }) => s.stage)).toEqual([
      "BASE",
      "IMPROVER",
      "EVALUATE",
      "GENERATE",
      "TRAIN",
      "EVALUATE",
    ]);
    expect(readFileSync(join(dir, "report", "rewards.txt"), "utf8")).toMatch(
      /iteration 1\s+0\.\d{4} ± 0\.\d{4}/,
    );
    // Pairs grid: losers above winners (2 rows of 16-pixel images at 4×); samples: base and iteration 1.
    const pairs = decodePng(readFileSync(join(dir, "report", "pairs-iter-1.png")));
    expect(pairs.height).toBe(2 + 2 * (64 + 2));
    const samples = decodePng(readFileSync(join(dir, "report", "samples.png")));
    expect(samples.height).toBe(2 + 2 * (64 + 2));
    expect(samples.width).toBe(2 + EVAL_PROMPTS.length * 2 * (64 + 2));
  });

  it("puts the spans of the run's stages and of the services they call into the run's trace", () => {
    const traceId = runTraceId(result.run.runId);
    const inRun = spans.filter((s) => s.spanContext().traceId === traceId);
    const names = new Set(inRun.map((s) => s.name));
    for (const stage of ["base", "improver", "generate", "train", "evaluate"]) {
      expect(names, `stage span idpo.run.${stage}`).toContain(`idpo.run.${stage}`);
    }
    // Server spans of the services the controller and the generator called, in the same trace.
    const services = new Set(inRun.map((s) => s.attributes["rpc.service"]).filter((v) => v !== undefined));
    expect(services).toContain("idpo.trainer.v1.TrainerService");
    expect(services).toContain("idpo.generator.v1.GeneratorService");
    expect(services).toContain("idpo.scorer.v1.ScorerService");
    // generate → improve: the shard went through the work queue (trace context in its headers) to the
    // generator, whose ImproveImages call reached the improver within the same trace.
    expect(names).toContain("generator.pair_shard");
    expect(services).toContain("idpo.improver.v1.ImproverService");
    expect(services.size).toBeGreaterThanOrEqual(3);
  });
});
