import { readFileSync } from "node:fs";
import { create, fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import { type Client, createClient } from "@connectrpc/connect";
import { describeRun, followRun, progressLine, statusLine } from "@idpo/local-mesh";
import { PRETRAINED_BASE_ID, PRETRAINED_IMPROVER_ID, startFromPretrained } from "@idpo/mesh";
import {
  ControllerService,
  LrSchedule,
  type Run,
  type RunConfig,
  RunConfigSchema,
  RunMethod,
  RunSchema,
  RunState,
  TrainingConfigSchema,
} from "@idpo/proto";
import { createPeerTransport, peerAddress } from "@idpo/runtime";
import { Command } from "commander";
import { intArg, numberArg } from "../args.js";
import { UsageError } from "../errors.js";

const LR_SCHEDULES: Record<string, LrSchedule> = {
  constant: LrSchedule.CONSTANT,
  cosine: LrSchedule.COSINE,
  linear: LrSchedule.LINEAR,
};

const METHODS: Record<string, RunMethod> = {
  "iterative-dpo": RunMethod.ITERATIVE_DPO,
  spin: RunMethod.SPIN,
  "dpo-offline": RunMethod.DPO_OFFLINE,
  sft: RunMethod.SFT,
};

/** A Controller client for --addr (else IDPO_CONTROLLER_ADDR, else the default port); IDPO_AUTH_TOKEN is sent. */
export function controllerClient(addr?: string): Client<typeof ControllerService> {
  const address = addr ?? peerAddress("controller");
  const token = process.env.IDPO_AUTH_TOKEN?.trim() || undefined;
  try {
    return createClient(ControllerService, createPeerTransport(address, { token }));
  } catch (err) {
    throw new UsageError(`--addr: ${(err as Error).message}`);
  }
}

/** Options of `idpo run create` that map onto RunConfig fields. */
interface CreateOptions {
  config?: string;
  id?: string;
  name?: string;
  method?: string;
  dataset?: string;
  preset?: string;
  iterations?: number;
  pairs?: number;
  shardSize?: number;
  baseSteps?: number;
  improverSteps?: number;
  policySteps?: number;
  batchSize?: number;
  beta?: number;
  lrSchedule?: string;
  minLrRatio?: number;
  samplingSteps?: number;
  evalSamples?: number;
  seed?: number;
  baseCheckpoint?: string;
  improverCheckpoint?: string;
  fromScratch?: boolean;
  watch?: boolean;
  addr?: string;
  json?: boolean;
}

/** The RunConfig of `idpo run create`: the --config file (protobuf JSON), then the flags over it. */
export function buildRunConfig(opts: CreateOptions): RunConfig {
  let json: JsonValue = {};
  if (opts.config) {
    let text: string;
    try {
      text = readFileSync(opts.config, "utf8");
    } catch (err) {
      throw new UsageError(`--config: cannot read ${opts.config}: ${(err as Error).message}`);
    }
    try {
      json = JSON.parse(text) as JsonValue;
    } catch (err) {
      throw new UsageError(`--config: ${opts.config} is not JSON: ${(err as Error).message}`);
    }
  }
  let config: RunConfig;
  try {
    config = fromJson(RunConfigSchema, json);
  } catch (err) {
    throw new UsageError(`--config: ${opts.config} is not a RunConfig: ${(err as Error).message}`);
  }
  if (opts.name !== undefined) config.name = opts.name;
  if (opts.method !== undefined) {
    const m = METHODS[opts.method];
    if (m === undefined)
      throw new UsageError(
        `--method: expected one of ${Object.keys(METHODS).join(", ")}, got "${opts.method}"`,
      );
    config.method = m;
  }
  if (opts.dataset !== undefined) config.dataset = opts.dataset;
  if (opts.preset !== undefined) config.modelPreset = opts.preset;
  if (opts.iterations !== undefined) config.iterations = opts.iterations;
  if (opts.pairs !== undefined) config.pairsPerIteration = opts.pairs;
  if (opts.shardSize !== undefined) config.shardSize = opts.shardSize;
  if (opts.samplingSteps !== undefined) config.samplingSteps = opts.samplingSteps;
  if (opts.evalSamples !== undefined) config.evalSamplesPerPrompt = opts.evalSamples;
  if (opts.seed !== undefined) config.seed = BigInt(opts.seed);
  if (opts.baseCheckpoint !== undefined) config.baseCheckpointId = opts.baseCheckpoint;
  if (opts.improverCheckpoint !== undefined) config.improverCheckpointId = opts.improverCheckpoint;
  let lrSchedule: LrSchedule | undefined;
  if (opts.lrSchedule !== undefined) {
    lrSchedule = LR_SCHEDULES[opts.lrSchedule];
    if (lrSchedule === undefined) {
      throw new UsageError(
        `--lr-schedule: expected one of ${Object.keys(LR_SCHEDULES).join(", ")}, got "${opts.lrSchedule}"`,
      );
    }
  }
  const everyStage =
    opts.batchSize !== undefined || lrSchedule !== undefined || opts.minLrRatio !== undefined;
  const training = (field: "baseTraining" | "improverTraining" | "policyTraining", steps?: number) => {
    if (steps === undefined && !everyStage && (field !== "policyTraining" || opts.beta === undefined)) return;
    config[field] ??= create(TrainingConfigSchema, {});
    const t = config[field]!;
    if (steps !== undefined) t.steps = steps;
    if (opts.batchSize !== undefined) t.batchSize = opts.batchSize;
    if (lrSchedule !== undefined) t.lrSchedule = lrSchedule;
    if (opts.minLrRatio !== undefined) t.minLrRatio = opts.minLrRatio;
    if (field === "policyTraining" && opts.beta !== undefined) t.beta = opts.beta;
  };
  training("baseTraining", opts.baseSteps);
  training("improverTraining", opts.improverSteps);
  training("policyTraining", opts.policySteps);
  if (!opts.fromScratch) startFromPretrained(config);
  return config;
}

function print(run: Run, json: boolean | undefined): void {
  if (json) process.stdout.write(`${JSON.stringify(toJson(RunSchema, run), null, 2)}\n`);
  else process.stdout.write(`${describeRun(run)}\n`);
}

/** Follows a run until it ends: one line per change on stderr (or JSON lines on stdout); exit 1 if it failed. */
async function watch(
  client: Client<typeof ControllerService>,
  runId: string,
  json: boolean | undefined,
): Promise<Run> {
  let lastLine = "";
  const ac = new AbortController();
  const onSigint = () => ac.abort();
  process.once("SIGINT", onSigint);
  let last: Run | undefined;
  try {
    last = await followRun(client, runId, {
      signal: ac.signal,
      onUpdate: (run) => {
        if (json) {
          process.stdout.write(`${JSON.stringify(toJson(RunSchema, run))}\n`);
          return;
        }
        const line = progressLine(run);
        if (line !== lastLine) process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);
        lastLine = line;
      },
    });
  } finally {
    process.off("SIGINT", onSigint);
  }
  if (!last) throw new Error(`no update of run ${runId} was received`);
  return last;
}

/** `idpo run create|get|list|watch|cancel`: the Controller's runs. */
export function runCommand(): Command {
  const cmd = new Command("run").description(
    "create, inspect, follow and cancel training runs (the Controller)",
  );
  defineCreate(cmd.command("create"));
  defineGet(cmd.command("get"));
  defineList(cmd.command("list"));
  defineWatch(cmd.command("watch"));
  defineCancel(cmd.command("cancel"));
  return cmd;
}

/** The options every run subcommand has: the Controller's address and JSON output. */
function withAddr(c: Command): Command {
  return c
    .option("--addr <url>", "Controller address (default IDPO_CONTROLLER_ADDR or http://127.0.0.1:50055)")
    .option("--json", "print protobuf JSON instead of text");
}

/** `idpo run create`: a RunConfig from --config and the flags; --watch follows the run to its end. */
function defineCreate(c: Command): void {
  withAddr(createOptions(c)).action(async (opts: CreateOptions) => {
    const config = buildRunConfig(opts);
    const client = controllerClient(opts.addr);
    const res = await client.createRun({ runId: opts.id ?? "", config });
    const run = res.run!;
    if (!opts.watch) {
      print(run, opts.json);
      return;
    }
    if (!opts.json) process.stderr.write(`run ${run.runId} created\n`);
    const last = await watch(client, run.runId, opts.json);
    if (!opts.json) print(last, false);
    if (last.state !== RunState.SUCCEEDED) process.exitCode = 1;
  });
}

/** The flags of `idpo run create` (see {@link CreateOptions}). */
function createOptions(c: Command): Command {
  return c
    .description("create a run from --config run.json (a RunConfig in protobuf JSON) and/or flags")
    .option("--config <file>", "RunConfig as protobuf JSON; flags override its fields")
    .option("--id <run-id>", "run id ([a-z0-9-]{1,63}); default generated")
    .option("--name <name>", "human-readable name")
    .option("--method <method>", `one of ${Object.keys(METHODS).join(", ")} (default iterative-dpo)`)
    .option(
      "--dataset <uri>",
      "offline dataset: shapes://?pairs=N&size=S&seed=K, file:///dir or artifact://prefix",
    )
    .option("--preset <name>", "model preset: tiny, shapes16, shapes32 (default shapes16)")
    .option("--iterations <k>", "iterations K (default 3)", intArg("--iterations", 1, 100))
    .option("--pairs <n>", "online pairs per iteration (default 512)", intArg("--pairs", 1, 1_000_000))
    .option("--shard-size <n>", "pairs per work-queue shard (default 32)", intArg("--shard-size", 1, 4096))
    .option("--base-steps <n>", "base-model pretraining steps", intArg("--base-steps", 1, 1_000_000))
    .option("--improver-steps <n>", "improver training steps", intArg("--improver-steps", 1, 1_000_000))
    .option(
      "--policy-steps <n>",
      "policy training steps per iteration",
      intArg("--policy-steps", 1, 1_000_000),
    )
    .option("--batch-size <n>", "batch size of every training stage", intArg("--batch-size", 1, 4096))
    .option("--beta <b>", "DPO β (default 2000)", numberArg("--beta"))
    .option(
      "--lr-schedule <schedule>",
      `learning-rate schedule of every training stage after its warmup: ${Object.keys(LR_SCHEDULES).join(", ")} (default constant)`,
    )
    .option(
      "--min-lr-ratio <r>",
      "final learning rate of a cosine or linear schedule, as a fraction of the peak (default 0.1)",
      numberArg("--min-lr-ratio"),
    )
    .option(
      "--sampling-steps <n>",
      "denoising steps of every sampling (default 20)",
      intArg("--sampling-steps", 1, 1000),
    )
    .option(
      "--eval-samples <n>",
      "samples per evaluation prompt (default 4)",
      intArg("--eval-samples", 1, 256),
    )
    .option("--seed <n>", "master seed", intArg("--seed", 0, Number.MAX_SAFE_INTEGER))
    .option("--base-checkpoint <id>", "use this base checkpoint instead of pretraining")
    .option("--improver-checkpoint <id>", "use this improver checkpoint instead of training one")
    .option(
      "--from-scratch",
      `train the base and improver instead of starting a shapes16 run from the shipped ${PRETRAINED_BASE_ID} and ${PRETRAINED_IMPROVER_ID}`,
    )
    .option("--watch", "follow the run until it ends");
}

/** `idpo run get <run-id>`: a run in words (or JSON). */
function defineGet(c: Command): void {
  withAddr(c.description("show a run").argument("<run-id>")).action(
    async (runId: string, opts: { addr?: string; json?: boolean }) => {
      const res = await controllerClient(opts.addr).getRun({ runId });
      print(res.run!, opts.json);
    },
  );
}

/** `idpo run list`: runs, newest first. */
function defineList(c: Command): void {
  withAddr(
    c
      .description("list runs, newest first")
      .option("--limit <n>", "most runs shown (default 100)", intArg("--limit", 1, 1000)),
  ).action(async (opts: { addr?: string; json?: boolean; limit?: number }) => {
    const res = await controllerClient(opts.addr).listRuns({ pageSize: opts.limit ?? 100 });
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify(
          res.runs.map((r) => toJson(RunSchema, r)),
          null,
          2,
        )}\n`,
      );
      return;
    }
    if (res.runs.length === 0) {
      process.stdout.write("no runs\n");
      return;
    }
    for (const r of res.runs) {
      const created = r.createTime ? new Date(Number(r.createTime.seconds) * 1000).toISOString() : "";
      process.stdout.write(`${r.runId.padEnd(24)}  ${created.padEnd(24)}  ${statusLine(r)}\n`);
    }
    if (res.nextPageToken) process.stdout.write(`(more runs: raise --limit)\n`);
  });
}

/** `idpo run watch <run-id>`: follows a run until it ends; exit 1 when it failed. */
function defineWatch(c: Command): void {
  withAddr(c.description("follow a run's progress until it ends").argument("<run-id>")).action(
    async (runId: string, opts: { addr?: string; json?: boolean }) => {
      const last = await watch(controllerClient(opts.addr), runId, opts.json);
      if (!opts.json) print(last, false);
      if (last.state === RunState.FAILED) process.exitCode = 1;
    },
  );
}

/** `idpo run cancel <run-id>`: cancels a run and its current training job. */
function defineCancel(c: Command): void {
  withAddr(c.description("cancel a run and its current training job").argument("<run-id>")).action(
    async (runId: string, opts: { addr?: string; json?: boolean }) => {
      const res = await controllerClient(opts.addr).cancelRun({ runId });
      print(res.run!, opts.json);
    },
  );
}
