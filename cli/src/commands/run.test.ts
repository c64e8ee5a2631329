import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { solidImage } from "@idpo/data";
import { imagesToMessages } from "@idpo/mesh";
import {
  ControllerService,
  type CreateRunRequest,
  type ImproveImagesRequest,
  ImproverService,
  LrSchedule,
  type Run,
  RunMethod,
  RunSchema,
  RunStage,
  RunState,
} from "@idpo/proto";
import { buildServer, createLogger, type ListeningServer, type ServiceDefinition } from "@idpo/runtime";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { improveCommand } from "./improve.js";
import { buildRunConfig, runCommand } from "./run.js";

const quiet = createLogger("error", {}, () => {});

/** Runs a command with `args`, returning what it wrote to stdout. */
async function capture(
  cmd: () => { parseAsync(a: string[], o: { from: "user" }): Promise<unknown> },
  args: string[],
) {
  let out = "";
  const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => {
    out += String(chunk);
    return true;
  });
  try {
    await cmd().parseAsync(args, { from: "user" });
  } finally {
    spy.mockRestore();
  }
  return out;
}

async function serve(def: ServiceDefinition): Promise<ListeningServer> {
  const built = await buildServer(def, { env: {}, config: { host: "127.0.0.1", port: 0 }, logger: quiet });
  return built.listen();
}

describe("buildRunConfig", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "idpo-run-cli-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("reads a protobuf-JSON config file and lets flags override its fields", () => {
    const file = join(dir, "run.json");
    writeFileSync(
      file,
      JSON.stringify({
        method: "RUN_METHOD_SPIN",
        dataset: "shapes://?pairs=100&size=16&seed=1",
        iterations: 4,
        policy_training: { steps: 50, beta: 500 },
      }),
    );
    const c = buildRunConfig({
      config: file,
      iterations: 2,
      beta: 1000,
      policySteps: 70,
      seed: 9,
      preset: "tiny",
    });
    expect(c.method).toBe(RunMethod.SPIN);
    expect(c.dataset).toBe("shapes://?pairs=100&size=16&seed=1");
    expect(c.iterations).toBe(2);
    expect(c.modelPreset).toBe("tiny");
    expect(c.seed).toBe(9n);
    expect(c.policyTraining!.steps).toBe(70);
    expect(c.policyTraining!.beta).toBe(1000);
    expect(c.baseTraining).toBeUndefined();
  });

  it("names the problem with a bad file or method", () => {
    expect(() => buildRunConfig({ config: join(dir, "missing.json") })).toThrow(/--config: cannot read/);
    writeFileSync(join(dir, "bad.json"), JSON.stringify({ iterations: "many" }));
    expect(() => buildRunConfig({ config: join(dir, "bad.json") })).toThrow(
      /--config: .* is not a RunConfig/,
    );
    expect(() => buildRunConfig({ method: "ppo" })).toThrow(/--method: expected one of iterative-dpo, spin/);
    expect(() => buildRunConfig({ lrSchedule: "step" })).toThrow(
      /--lr-schedule: expected one of constant, cosine, linear, got "step"/,
    );
  });

  it("sets the learning-rate schedule of every training stage", () => {
    const c = buildRunConfig({ fromScratch: true, baseSteps: 10, lrSchedule: "cosine", minLrRatio: 0.05 });
    for (const t of [c.baseTraining!, c.improverTraining!, c.policyTraining!]) {
      expect(t.lrSchedule).toBe(LrSchedule.COSINE);
      expect(t.minLrRatio).toBe(0.05);
    }
    expect(c.baseTraining!.steps).toBe(10);
  });
});

describe("idpo run (against a Controller)", () => {
  let server: ListeningServer;
  const requests: CreateRunRequest[] = [];
  const run = (state: RunState): Run =>
    create(RunSchema, {
      runId: "r7",
      state,
      stage: state === RunState.RUNNING ? RunStage.TRAIN : RunStage.DONE,
      iteration: 1,
      config: { dataset: "shapes://?pairs=10&size=16&seed=0", iterations: 2, modelPreset: "tiny" },
      createTime: timestampNow(),
      progress: { done: 3n, total: 10n, loss: 0.5, etaSeconds: 12, message: "iteration 1: running" },
      baseEvaluation: { reward: { mean: 0.6, ci95Low: 0.55, ci95High: 0.65, n: 8 }, vendi: 2 },
      iterations: [
        {
          index: 1,
          pairs: 16,
          shardsDone: 4,
          shardsTotal: 4,
          trainMetrics: { loss: 0.5 },
          evaluation: {
            reward: { mean: 0.7, ci95Low: 0.66, ci95High: 0.74, n: 8 },
            vendi: 2.5,
            winRateVsBase: 0.625,
          },
        },
      ],
    });

  beforeEach(async () => {
    requests.length = 0;
    server = await serve({
      name: "controller",
      defaultPort: 0,
      grpcServices: [ControllerService.typeName],
      create: (ctx) => {
        ctx.setServing(true);
        return {
          routes: (router) =>
            router.service(ControllerService, {
              createRun: (req) => {
                requests.push(req);
                return { run: run(RunState.PENDING) };
              },
              getRun: (req) => {
                if (req.runId !== "r7")
                  throw new ConnectError(`run_id: no run "${req.runId}"`, Code.NotFound);
                return { run: run(RunState.RUNNING) };
              },
              listRuns: () => ({ runs: [run(RunState.RUNNING)] }),
              watchRun: async function* () {
                yield { run: run(RunState.RUNNING) };
                yield { run: run(RunState.SUCCEEDED) };
              },
              cancelRun: () => ({ run: run(RunState.CANCELLED) }),
            }),
        };
      },
    });
  });
  afterEach(async () => server.shutdown());

  it("creates a run from flags", async () => {
    const out = await capture(runCommand, [
      "create",
      "--addr",
      server.url,
      "--id",
      "r7",
      "--dataset",
      "shapes://?pairs=10&size=16&seed=0",
      "--iterations",
      "2",
      "--pairs",
      "64",
    ]);
    expect(requests).toHaveLength(1);
    expect(requests[0].runId).toBe("r7");
    expect(requests[0].config!.pairsPerIteration).toBe(64);
    expect(out).toContain("run r7");
    expect(out).toContain("pending");
  });

  it("shows a run as text with its reward table, or as protobuf JSON", async () => {
    const text = await capture(runCommand, ["get", "r7", "--addr", server.url]);
    expect(text).toContain("run r7: running · train · iteration 1/2");
    expect(text).toMatch(/iteration 1\s+0\.7000 ± 0\.0400\s+0\.625/);
    const json = JSON.parse(await capture(runCommand, ["get", "r7", "--addr", server.url, "--json"]));
    expect(json.runId).toBe("r7");
    expect(json.state).toBe("RUN_STATE_RUNNING");
    await expect(capture(runCommand, ["get", "nope", "--addr", server.url])).rejects.toThrow(
      /run_id: no run "nope"/,
    );
  });

  it("lists, watches to the end and cancels", async () => {
    expect(await capture(runCommand, ["list", "--addr", server.url])).toMatch(/^r7\s+\S+\s+running · train/);
    const watched = await capture(runCommand, ["watch", "r7", "--addr", server.url, "--json"]);
    expect(
      watched
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).state),
    ).toEqual(["RUN_STATE_RUNNING", "RUN_STATE_SUCCEEDED"]);
    expect(await capture(runCommand, ["cancel", "r7", "--addr", server.url])).toContain("cancelled");
  });
});

describe("idpo improve (against an Improver)", () => {
  let server: ListeningServer;
  let dir: string;
  const seen: { req: ImproveImagesRequest; auth: string | null }[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "idpo-improve-cli-"));
    seen.length = 0;
    server = await serve({
      name: "improver",
      defaultPort: 0,
      grpcServices: [ImproverService.typeName],
      create: (ctx) => {
        ctx.setServing(true);
        return {
          routes: (router) =>
            router.service(ImproverService, {
              improveImages: (req, hctx) => {
                seen.push({ req, auth: hctx.requestHeader.get("authorization") });
                return {
                  images: imagesToMessages({
                    n: 1,
                    height: 16,
                    width: 16,
                    channels: 3,
                    data: solidImage(16, 16, [0, 1, 0]).data,
                  }),
                  checkpoint: { id: "runs/x/improver" },
                };
              },
              getModel: () => ({}),
              loadCheckpoint: () => ({}),
            }),
        };
      },
    });
  });
  afterEach(async () => {
    await server.shutdown();
    rmSync(dir, { recursive: true, force: true });
    delete process.env.IDPO_AUTH_TOKEN;
  });

  it("sends the PNG, prompt and sampling settings with the bearer token, and writes the improved PNG", async () => {
    const input = join(dir, "in.png");
    const output = join(dir, "out.png");
    writeFileSync(
      input,
      imagesToMessages({
        n: 1,
        height: 16,
        width: 16,
        channels: 3,
        data: solidImage(16, 16, [1, 0, 0]).data,
      })[0].data.value as Uint8Array,
    );
    process.env.IDPO_AUTH_TOKEN = "s3cret";
    const out = await capture(improveCommand, [
      "--in",
      input,
      "--prompt",
      "a small red circle on a black background",
      "--out",
      output,
      "--addr",
      server.url,
      "--steps",
      "7",
      "--seed",
      "3",
      "--text-guidance",
      "4",
    ]);
    expect(seen).toHaveLength(1);
    const { req, auth } = seen[0];
    expect(auth).toBe("Bearer s3cret");
    expect(req.prompts).toEqual(["a small red circle on a black background"]);
    expect(req.steps).toBe(7);
    expect(req.seed).toBe(3n);
    expect(req.textGuidanceScale).toBe(4);
    expect(req.imageGuidanceScale).toBe(3);
    expect(req.images[0].data.case).toBe("png");
    expect(readFileSync(output).subarray(1, 4).toString()).toBe("PNG");
    expect(out).toContain("runs/x/improver");
  });

  it("refuses a missing input file and an empty prompt", async () => {
    await expect(
      capture(improveCommand, ["--in", join(dir, "none.png"), "--prompt", "x", "--out", join(dir, "o.png")]),
    ).rejects.toThrow(/--in: cannot read/);
    writeFileSync(join(dir, "a.png"), "x");
    await expect(
      capture(improveCommand, ["--in", join(dir, "a.png"), "--prompt", " ", "--out", join(dir, "o.png")]),
    ).rejects.toThrow(/--prompt: must not be empty/);
  });
});
