import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { decodePng, solidImage } from "@idpo/data";
import { encodePairShard } from "@idpo/mesh";
import { RunConfigSchema, RunState } from "@idpo/proto";
import { afterEach, describe, expect, it } from "vitest";
import { FakeMesh } from "./fake-mesh-fixture.js";
import { shardArtifact } from "./run-plan.js";

const EVAL_PROMPTS = [
  "a small red circle on a black background",
  "a large blue square on a white background",
];

const config = create(RunConfigSchema, {
  dataset: "shapes://?pairs=64&size=16&seed=1",
  modelPreset: "tiny",
  baseTraining: { steps: 3 },
  improverTraining: { steps: 3 },
  policyTraining: { steps: 3 },
  iterations: 1,
  pairsPerIteration: 6,
  shardSize: 4,
  evalPrompts: EVAL_PROMPTS,
  evalSamplesPerPrompt: 2,
  seed: 7n,
});

async function rejection(p: Promise<unknown>): Promise<ConnectError> {
  const err = await p.then(
    () => undefined,
    (e) => e,
  );
  expect(err).toBeInstanceOf(ConnectError);
  return err as ConnectError;
}

describe("GetIterationPairs, GetEvaluationSamples and CreateRun.validate_only", () => {
  let mesh: FakeMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it("return a run's stored pairs and evaluation samples; validate_only creates nothing", async () => {
    mesh = await new FakeMesh().start();
    const { client } = await mesh.controller();

    const checked = await client.createRun({ runId: "img", config, validateOnly: true });
    expect(checked.run!.config!.samplingSteps).toBe(20);
    await expect(client.getRun({ runId: "img" })).rejects.toThrow(/no run/);
    const bad = await rejection(
      client.createRun({ runId: "img", config: { ...config, shardSize: 5000 }, validateOnly: true }),
    );
    expect(bad.code).toBe(Code.InvalidArgument);
    expect(bad.rawMessage).toContain("config.shard_size");
    const missing = await rejection(
      client.createRun({
        runId: "img",
        config: { ...config, baseCheckpointId: "runs/none/base" },
        validateOnly: true,
      }),
    );
    expect(missing.code).toBe(Code.FailedPrecondition);
    expect(missing.rawMessage).toContain("config.base_checkpoint_id");

    await client.createRun({ runId: "img", config });
    const taken = await rejection(
      client.createRun({ runId: "img", config: { ...config, seed: 8n }, validateOnly: true }),
    );
    expect(taken.code).toBe(Code.AlreadyExists);
    for await (const res of client.watchRun({ runId: "img" }, { timeoutMs: 30_000 })) {
      if (res.run!.state !== RunState.PENDING && res.run!.state !== RunState.RUNNING) break;
    }
    expect((await client.getRun({ runId: "img" })).run!.state).toBe(RunState.SUCCEEDED);

    // The fake generator stores placeholder bytes: replace shard 0 and 1 with real shards, 4 + 2 pairs,
    // the loser of pair i a grey of level i/10 and its winner 1 - that.
    const grey = (v: number) => solidImage(16, 16, [v, v, v]);
    const shard = (from: number, n: number) =>
      encodePairShard({
        height: 16,
        width: 16,
        records: Array.from({ length: n }, (_, j) => ({
          prompt: `prompt ${from + j}`,
          loser: grey((from + j) / 10),
          winner: grey(1 - (from + j) / 10),
        })),
      });
    await mesh.bus.artifacts.put(shardArtifact("img", 1, 1), shard(4, 2));
    await mesh.bus.artifacts.put(shardArtifact("img", 1, 0), shard(0, 4));

    const pairs = await client.getIterationPairs({ runId: "img", iteration: 1, maxPairs: 5 });
    expect(pairs.storedPairs).toBe(6);
    expect(pairs.pairs.map((p) => p.prompt)).toEqual([
      "prompt 0",
      "prompt 1",
      "prompt 2",
      "prompt 3",
      "prompt 4",
    ]);
    const level = (img: (typeof pairs.pairs)[number]["loser"]) =>
      img?.data.case === "png" ? decodePng(img.data.value).data[0] : Number.NaN;
    expect(level(pairs.pairs[4].loser)).toBeCloseTo(0.4, 2);
    expect(level(pairs.pairs[4].winner)).toBeCloseTo(0.6, 2);
    expect((await client.getIterationPairs({ runId: "img", iteration: 1 })).pairs).toHaveLength(6);

    const base = await client.getEvaluationSamples({ runId: "img", iteration: 0 });
    const iter1 = await client.getEvaluationSamples({ runId: "img", iteration: 1, maxSamples: 3 });
    expect(base.samples).toHaveLength(4);
    expect(base.samples.map((s) => s.prompt)).toEqual([
      EVAL_PROMPTS[0],
      EVAL_PROMPTS[0],
      EVAL_PROMPTS[1],
      EVAL_PROMPTS[1],
    ]);
    expect(iter1.samples).toHaveLength(3);
    // Same seeds for every model.
    expect(iter1.samples.map((s) => s.seed)).toEqual(base.samples.slice(0, 3).map((s) => s.seed));
    expect(base.checkpointId).toBe("runs/img/base");
    expect(iter1.checkpointId).toBe("runs/img/iter-1/policy");
    expect(iter1.samples[0].image?.data.case).toBe("png");

    const outOfRange = await rejection(client.getIterationPairs({ runId: "img", iteration: 2 }));
    expect(outOfRange.code).toBe(Code.InvalidArgument);
    expect(outOfRange.rawMessage).toContain("iteration");
    const tooMany = await rejection(client.getEvaluationSamples({ runId: "img", maxSamples: 5000 }));
    expect(tooMany.rawMessage).toContain("max_samples");
    const unknown = await rejection(client.getEvaluationSamples({ runId: "nope" }));
    expect(unknown.code).toBe(Code.NotFound);
  });
});
