import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { type Bus, openBus } from "@idpo/bus";
import { readPairs, stackImages } from "@idpo/data";
import {
  type BackendInfo,
  createModel,
  decodeCheckpoint,
  defaultTrainWorkers,
  encodeCheckpoint,
  epsMseLoss,
  improverFromPolicy,
  initBackend,
  preset,
  pretrainObjective,
  Rng,
  readCheckpointMetadata,
  Trainer,
} from "@idpo/diffusion";
import { CheckpointStore, closeSharedBus, encodePairShard } from "@idpo/mesh";
import {
  Health,
  HealthCheckResponse_ServingStatus,
  type Job,
  JobKind,
  JobSpecSchema,
  JobState,
  ModelKind,
  type RunEvent,
  RunEventSchema,
  TrainerService,
} from "@idpo/proto";
import { buildServer, createLogger } from "@idpo/runtime";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJobManager, type JobManager } from "./job-manager.js";
import { ensureShapesDataset, shapesCacheDir } from "./pair-sources.js";
import { trainerEnvConfig, trainerRoutes, trainerService } from "./trainer-service.js";
import { trainingStateArtifact } from "./training-state.js";

const quiet = createLogger("error", {}, () => {});
const SHAPES = "shapes://?pairs=12&size=16&seed=3";
const BASE = "test/base";
const IMPROVER = "test/improver";

let root: string;
let dataDir: string;
let buses = 0;

type TrainerClient = Client<typeof TrainerService>;

/** A fresh embedded bus holding a tiny base policy and a tiny improver checkpoint. */
async function freshBus(): Promise<Bus> {
  const bus = await openBus({ backend: "embedded", dataDir: join(root, `bus-${buses++}`) });
  const store = new CheckpointStore(bus.artifacts);
  const base = createModel(preset("tiny"), 7);
  const improver = improverFromPolicy(base);
  for (const [id, m, kind] of [
    [BASE, base, ModelKind.POLICY],
    [IMPROVER, improver, ModelKind.IMPROVER],
  ] as const) {
    const bytes = encodeCheckpoint(m, { step: 0 });
    const sha256 = readCheckpointMetadata(bytes).contentHash.replace("sha256:", "");
    await store.put({ id, kind, step: 0, sha256 }, bytes);
  }
  base.dispose();
  improver.dispose();
  return bus;
}

async function trainer(bus: Bus, trainWorkers = 1): Promise<{ mgr: JobManager; client: TrainerClient }> {
  const mgr = await createJobManager({
    bus,
    logger: quiet,
    dataDir,
    spin: { steps: 2, guidanceScale: 3 },
    progressEvery: 2,
    trainWorkers,
  });
  const client = createClient(TrainerService, createRouterTransport(trainerRoutes(() => mgr)));
  return { mgr, client };
}

async function watch(client: TrainerClient, jobId: string, until?: (job: Job) => boolean): Promise<Job[]> {
  const out: Job[] = [];
  const ac = new AbortController();
  try {
    for await (const r of client.watchJob({ jobId }, { signal: ac.signal })) {
      out.push(r.job!);
      if (until?.(r.job!)) {
        ac.abort();
        break;
      }
    }
  } catch (e) {
    if (!ac.signal.aborted) throw e;
  }
  return out;
}

async function events(bus: Bus, filter: string): Promise<RunEvent[]> {
  const got: RunEvent[] = [];
  const sub = await bus.events.subscribe(
    { consumer: `t${Math.floor(Math.random() * 1e9)}`, filter, start: "all" },
    (m) => {
      got.push(fromBinary(RunEventSchema, m.data));
    },
  );
  // Delivery is asynchronous: wait until nothing new arrives for a while.
  let seen = -1;
  for (let quiet = 0; quiet < 5; ) {
    await new Promise((r) => setTimeout(r, 20));
    quiet = got.length === seen ? quiet + 1 : 0;
    seen = got.length;
  }
  await sub.stop();
  return got;
}

/** Tensors a constructed, stepped and disposed library Trainer leaves behind. */
function trainerResidue(): number {
  const before = tf.memory().numTensors;
  const m = createModel(preset("tiny"), 1);
  const t = new Trainer(m.params, pretrainObjective(m), { schedule: { lr: 1e-3 }, seed: 1 });
  t.step([
    { prompts: ["", ""], images: { n: 2, height: 16, width: 16, channels: 3, data: new Float32Array(1536) } },
  ]);
  t.dispose();
  m.dispose();
  return tf.memory().numTensors - before;
}

async function codeOf(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (e) {
    const ce = ConnectError.from(e);
    return { code: ce.code, message: ce.rawMessage };
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  await initBackend({ log: () => {} });
  root = mkdtempSync(join(tmpdir(), "idpo-trainer-"));
  dataDir = join(root, "data");
});

afterAll(() => {
  rmSync(root, { recursive: true, force: true });
});

describe("SPIN's sampling", () => {
  it("IDPO_INFERENCE picks where SPIN's losers are sampled: in-process by default, or the sidecar", () => {
    expect(trainerEnvConfig({}).spinInference).toBe("in-process");
    expect(trainerEnvConfig({ IDPO_INFERENCE: "sidecar" }).spinInference).toBe("sidecar");
    expect(() => trainerEnvConfig({ IDPO_INFERENCE: "gpu" })).toThrow(/IDPO_INFERENCE/);
  });
});

describe("training workers", () => {
  it("IDPO_TRAIN_WORKERS is 0 (automatic) unless set to 1–64, and automatic means one per wasm thread", () => {
    expect(trainerEnvConfig({}).trainWorkers).toBe(0);
    expect(trainerEnvConfig({ IDPO_TRAIN_WORKERS: "3" }).trainWorkers).toBe(3);
    for (const bad of ["two", "-1", "65", "1.5"]) {
      expect(() => trainerEnvConfig({ IDPO_TRAIN_WORKERS: bad })).toThrow(/IDPO_TRAIN_WORKERS/);
    }
    const info = (name: BackendInfo["name"], threads: number): BackendInfo => ({
      name,
      tfBackend: name,
      threads,
      source: "auto",
      tried: [],
    });
    expect(defaultTrainWorkers(info("wasm", 2))).toBe(2);
    expect(defaultTrainWorkers(info("wasm", 1))).toBe(1);
    expect(defaultTrainWorkers(info("tensorflow", 16))).toBe(1);
    expect(defaultTrainWorkers(info("tensorflow-gpu", 16))).toBe(1);
    expect(defaultTrainWorkers(info("cpu", 1))).toBe(1);
  });
});

describe("TrainerService", () => {
  it("PRETRAIN: streams every step, checkpoints with events, and lowers the loss on a fixed batch", async () => {
    const bus = await freshBus();
    const { mgr, client } = await trainer(bus);
    const spec = create(JobSpecSchema, {
      jobId: "pre-1",
      runId: "r1",
      kind: JobKind.PRETRAIN,
      data: [SHAPES],
      modelPreset: "tiny",
      training: {
        steps: 8,
        batchSize: 4,
        learningRate: 0.01,
        promptDropout: 0,
        seed: 5n,
        checkpointEvery: 3,
      },
    });
    const started = (await client.startJob({ spec })).job!;
    expect(started.state).toBe(JobState.QUEUED);
    expect(started.totalSteps).toBe(8);
    expect(started.spec!.outputCheckpointId).toBe("jobs/pre-1");
    const updates = await watch(client, "pre-1");
    const last = updates[updates.length - 1];
    expect(last.state).toBe(JobState.SUCCEEDED);
    expect(last.step).toBe(8);
    expect(last.etaSeconds).toBe(0);
    // One update after every step from the first one seen.
    const steps = [
      ...new Set(updates.filter((u) => u.state === JobState.RUNNING && u.step > 0).map((u) => u.step)),
    ];
    expect(steps).toEqual(Array.from({ length: steps.length }, (_, i) => 9 - steps.length + i));
    expect(Object.keys(last.metrics).sort()).toEqual(["grad_norm", "loss", "lr"]);
    expect(last.metrics.lr).toBeCloseTo(0.01, 6);
    expect(last.checkpoints.map((c) => c.id)).toEqual([
      "jobs/pre-1@step-3",
      "jobs/pre-1@step-6",
      "jobs/pre-1",
    ]);
    expect(last.finalCheckpoint!.id).toBe("jobs/pre-1");
    expect(last.finalCheckpoint!.kind).toBe(ModelKind.POLICY);
    expect(Number(last.finalCheckpoint!.step)).toBe(8);
    expect(last.finalCheckpoint!.parentId).toBe("");
    // Only the newest training state is kept while running, none once the job is done.
    expect(await bus.artifacts.info(trainingStateArtifact("jobs/pre-1@step-6"))).toBeUndefined();

    const evs = await events(bus, "idpo.events.r1.>");
    const ckpts = evs.filter((e) => e.payload.case === "checkpointPublished");
    expect(ckpts.map((e) => e.eventId)).toEqual([
      "r1/ckpt/jobs/pre-1@step-3",
      "r1/ckpt/jobs/pre-1@step-6",
      "r1/ckpt/jobs/pre-1",
    ]);
    const finalEv = ckpts[2].payload.value as {
      isFinal: boolean;
      jobId: string;
      checkpoint?: { sha256: string };
    };
    expect(finalEv.isFinal).toBe(true);
    expect(finalEv.jobId).toBe("pre-1");
    expect(finalEv.checkpoint!.sha256).toBe(last.finalCheckpoint!.sha256);
    const progress = evs.filter((e) => e.payload.case === "jobProgress").map((e) => e.eventId);
    expect(progress).toEqual([2, 4, 6, 8].map((s) => `r1/job/pre-1/progress/${s}`));
    // The training curve holds the metrics of every progress write, the last one equal to the final metrics.
    expect(last.history.map((p) => p.step)).toEqual([2, 4, 6, 8]);
    expect(last.history[3].metrics).toEqual(last.metrics);
    expect(last.history.every((p) => Number.isFinite(p.metrics.loss))).toBe(true);

    // The loss on a fixed batch (fixed timesteps and noise) is lower after training than at initialisation.
    const records = [];
    for await (const r of readPairs(shapesCacheDir(dataDir, { pairs: 12, size: 16, seed: 3 })))
      records.push(r);
    const batch = {
      prompts: records.map((r) => r.prompt),
      images: stackImages(records.map((r) => r.winner)),
    };
    const fixedLoss = (m: ReturnType<typeof createModel>) => {
      const out = epsMseLoss(m, batch, new Rng(99));
      const v = out.loss.dataSync()[0];
      out.loss.dispose();
      return v;
    };
    const before = createModel(preset("tiny"), 5);
    const stored = await new CheckpointStore(bus.artifacts).get("jobs/pre-1");
    const after = decodeCheckpoint(stored!.bytes).model;
    const lossBefore = fixedLoss(before);
    const lossAfter = fixedLoss(after);
    before.dispose();
    after.dispose();
    expect(lossAfter).toBeLessThan(lossBefore * 0.8);
    await mgr.close();
    await bus.close();
  });

  it("IMPROVER, SFT, DPO (online shards) and SPIN run in submission order with their metrics", async () => {
    const bus = await freshBus();
    await ensureShapesDataset(dataDir, { pairs: 12, size: 16, seed: 3 });
    // Two online pair shards, as generators store them.
    const records = [];
    for await (const r of readPairs(shapesCacheDir(dataDir, { pairs: 12, size: 16, seed: 3 })))
      records.push(r);
    for (let s = 0; s < 2; s++) {
      const bytes = encodePairShard({ height: 16, width: 16, records: records.slice(s * 3, s * 3 + 3) });
      await bus.artifacts.put(`runs/r2/iter-1/shard-${s}.pairs`, bytes);
    }
    const { mgr, client } = await trainer(bus);
    const training = { steps: 2, batchSize: 2, seed: 1n };
    const submit = async (jobId: string, kind: JobKind, init: string, extra: Record<string, unknown> = {}) =>
      (
        await client.startJob({
          spec: { jobId, runId: "r2", kind, data: [SHAPES], initCheckpointId: init, training, ...extra },
        })
      ).job!;
    const tensorsBefore = tf.memory().numTensors;
    await submit("imp", JobKind.IMPROVER, BASE);
    await submit("sft", JobKind.SFT, BASE, { training: { ...training, emaDecay: 0.9 } });
    await submit("dpo", JobKind.DPO, BASE, {
      referenceCheckpointId: BASE,
      data: ["artifact://runs/r2/iter-1/"],
    });
    const spin = await submit("spin", JobKind.SPIN, BASE, { iteration: 2 });
    expect(spin.spec!.referenceCheckpointId).toBe(BASE);
    const listed = await client.listJobs({ runId: "r2" });
    expect(listed.jobs.map((j) => j.jobId)).toEqual(["spin", "dpo", "sft", "imp"]);
    expect(listed.jobs.slice(0, 3).every((j) => j.state === JobState.QUEUED)).toBe(true);

    const [dpoUpdates, spinUpdates] = await Promise.all([watch(client, "dpo"), watch(client, "spin")]);
    await mgr.idle();
    // Every model, optimiser state and batch of the four jobs was released (beyond what the library's
    // training driver itself keeps after dispose(), measured here).
    expect(tf.memory().numTensors - tensorsBefore).toBe(4 * trainerResidue());
    const jobs = (await client.listJobs({ runId: "r2" })).jobs;
    for (const j of jobs) expect(j.state, `${j.jobId}: ${j.error}`).toBe(JobState.SUCCEEDED);
    const byId = new Map(jobs.map((j) => [j.jobId, j]));
    // One at a time, in submission order.
    const order = ["imp", "sft", "dpo", "spin"].map((id) => byId.get(id)!.updateTime!);
    for (let i = 1; i < order.length; i++)
      expect(order[i].seconds * 1000n + BigInt(Math.floor(order[i].nanos / 1e6))).toBeGreaterThanOrEqual(
        order[i - 1].seconds * 1000n + BigInt(Math.floor(order[i - 1].nanos / 1e6)),
      );
    expect(byId.get("imp")!.finalCheckpoint!.kind).toBe(ModelKind.IMPROVER);
    expect(byId.get("imp")!.finalCheckpoint!.parentId).toBe(BASE);
    expect(Object.keys(byId.get("imp")!.metrics)).toContain("loss");
    expect(Object.keys(byId.get("sft")!.metrics)).toEqual(
      expect.arrayContaining(["loss", "lr", "grad_norm"]),
    );
    // Lineage and EMA in the safetensors metadata.
    const store = new CheckpointStore(bus.artifacts);
    const sftMeta = readCheckpointMetadata((await store.get("jobs/sft"))!.bytes);
    const baseMeta = readCheckpointMetadata((await store.get(BASE))!.bytes);
    expect(sftMeta.parent).toBe(baseMeta.contentHash);
    expect(sftMeta.step).toBe(2);
    expect(sftMeta.extra).toMatchObject({
      parent_id: BASE,
      job_id: "sft",
      run_id: "r2",
      job_kind: "SFT",
      ema: "1",
    });
    for (const id of ["dpo", "spin"]) {
      expect(Object.keys(byId.get(id)!.metrics)).toEqual(
        expect.arrayContaining(["loss", "raw_model_loss", "ref_loss", "implicit_acc", "lr", "grad_norm"]),
      );
    }
    // At step 1 the policy is the reference: every pair is a tie, so loss = ln 2 and implicit_acc = 1/2.
    for (const updates of [dpoUpdates, spinUpdates]) {
      const first = updates.find((u) => u.step === 1)!;
      expect(first.metrics.loss).toBeCloseTo(Math.LN2, 5);
      expect(first.metrics.implicit_acc).toBe(0.5);
      expect(first.metrics.raw_model_loss).toBeCloseTo(first.metrics.ref_loss, 5);
    }
    const evs = await events(bus, "idpo.events.r2.checkpoint_published");
    const spinEv = evs.find((e) => e.eventId === "r2/ckpt/jobs/spin")!;
    expect((spinEv.payload.value as { iteration: number }).iteration).toBe(2);
    await mgr.close();
    await bus.close();
  });

  it("StartJob is idempotent; CancelJob stops a running job and a queued one; ListJobs pages", async () => {
    const bus = await freshBus();
    const { mgr, client } = await trainer(bus);
    const spec = {
      jobId: "long",
      kind: JobKind.SFT,
      data: [SHAPES],
      initCheckpointId: BASE,
      training: { steps: 1000, batchSize: 2, checkpointEvery: 2 },
    };
    const a = (await client.startJob({ spec })).job!;
    const again = (await client.startJob({ spec: { ...spec, training: { steps: 5 } } })).job!;
    expect(again.createTime).toEqual(a.createTime);
    expect(again.totalSteps).toBe(1000);
    const queued = (await client.startJob({ spec: { ...spec, jobId: "queued" } })).job!;
    await watch(client, "long", (j) => j.checkpoints.length > 0);
    // The queued job first, so that it is still queued when cancelled.
    const q = (await client.cancelJob({ jobId: queued.jobId })).job!;
    expect(q.state).toBe(JobState.CANCELLED);
    const cancelled = (await client.cancelJob({ jobId: "long" })).job!;
    expect(cancelled.state).toBe(JobState.CANCELLED);
    expect(cancelled.step).toBeGreaterThanOrEqual(2);
    expect(cancelled.step).toBeLessThan(1000);
    expect(cancelled.checkpoints[0].id).toBe("jobs/long@step-2");
    expect((await client.cancelJob({ jobId: "long" })).job!.state).toBe(JobState.CANCELLED);
    await mgr.idle();
    expect((await client.getJob({ jobId: "queued" })).job!.step).toBe(0);
    const ended = await watch(client, "long");
    expect(ended.map((j) => j.state)).toEqual([JobState.CANCELLED]);

    await client.startJob({ spec: { ...spec, jobId: "third", training: { steps: 1, batchSize: 1 } } });
    const p1 = await client.listJobs({ pageSize: 2 });
    expect(p1.jobs.map((j) => j.jobId)).toEqual(["third", "queued"]);
    const p2 = await client.listJobs({ pageSize: 2, pageToken: p1.nextPageToken });
    expect(p2.jobs.map((j) => j.jobId)).toEqual(["long"]);
    expect(p2.nextPageToken).toBe("");
    await mgr.idle();
    // A job whose inputs do not fit fails with a message naming the field.
    await client.startJob({
      spec: {
        jobId: "misfit",
        kind: JobKind.PRETRAIN,
        modelPreset: "tiny",
        data: ["shapes://?pairs=2&size=32&seed=1"],
        training: { steps: 1 },
      },
    });
    const misfit = (await watch(client, "misfit")).pop()!;
    expect(misfit.state).toBe(JobState.FAILED);
    expect(misfit.error).toMatch(/^spec\.data: images are 32x32 but the model works on 16x16/);
    // Ended jobs keep their checkpoints but no training state.
    expect(await bus.artifacts.list("trainer-state/")).toEqual([]);
    expect(await new CheckpointStore(bus.artifacts).ref("jobs/long@step-2")).toBeDefined();
    await mgr.close();
    await bus.close();
  });

  it("rejects bad requests with the right code and a message naming the field", async () => {
    const bus = await freshBus();
    const { mgr, client } = await trainer(bus);
    const ok = {
      jobId: "v",
      kind: JobKind.DPO,
      data: [SHAPES],
      initCheckpointId: BASE,
      referenceCheckpointId: BASE,
      training: { steps: 1 },
    };
    const cases: [Record<string, unknown>, Code, RegExp][] = [
      [{ kind: JobKind.UNSPECIFIED }, Code.InvalidArgument, /^spec\.kind/],
      [{ training: { steps: 0 } }, Code.InvalidArgument, /^spec\.training\.steps/],
      [{ data: ["ftp://x"] }, Code.InvalidArgument, /^spec\.data\[0\]/],
      [
        { data: [SHAPES, `file://${join(root, "nothing")}`] },
        Code.NotFound,
        /^spec\.data\[1\]: no pair dataset/,
      ],
      [{ data: ["artifact://runs/none/"] }, Code.NotFound, /^spec\.data\[0\]: no \*\.pairs shards/],
      [
        { initCheckpointId: "missing/ckpt" },
        Code.NotFound,
        /^spec\.init_checkpoint_id: checkpoint "missing\/ckpt" not found/,
      ],
      [
        { referenceCheckpointId: "" },
        Code.InvalidArgument,
        /^spec\.reference_checkpoint_id: required for DPO/,
      ],
      [{ referenceCheckpointId: "gone" }, Code.NotFound, /^spec\.reference_checkpoint_id/],
      [
        { initCheckpointId: IMPROVER },
        Code.FailedPrecondition,
        /^spec\.init_checkpoint_id: .* improvement model/,
      ],
      [
        { kind: JobKind.SFT, initCheckpointId: "", referenceCheckpointId: "" },
        Code.InvalidArgument,
        /^spec\.init_checkpoint_id/,
      ],
      [
        { kind: JobKind.PRETRAIN, initCheckpointId: "", referenceCheckpointId: "", modelPreset: "xl" },
        Code.InvalidArgument,
        /^spec\.model_preset/,
      ],
    ];
    for (const [patch, code, msg] of cases) {
      const got = await codeOf(client.startJob({ spec: { ...ok, ...patch } }));
      expect({ patch, code: got.code }).toEqual({ patch, code });
      expect(got.message).toMatch(msg);
    }
    expect((await codeOf(client.startJob({}))).message).toMatch(/^spec: required/);
    expect(await codeOf(client.getJob({ jobId: "nope" }))).toEqual({
      code: Code.NotFound,
      message: 'job_id: no job "nope"',
    });
    expect((await codeOf(client.cancelJob({ jobId: "nope" }))).code).toBe(Code.NotFound);
    expect((await codeOf(watch(client, "nope"))).code).toBe(Code.NotFound);
    expect((await codeOf(client.listJobs({ pageSize: 5000 }))).message).toMatch(/^page_size/);
    expect((await codeOf(client.listJobs({ pageToken: "garbage" }))).message).toMatch(/^page_token/);
    expect((await client.listJobs({})).jobs).toEqual([]);
    await mgr.close();
    await bus.close();
  });

  it("a trainer restarted mid-job resumes from the last checkpoint and ends where an uninterrupted job does (EMA included)", async () => {
    const bus = await freshBus();
    const spec = (jobId: string) => ({
      jobId,
      kind: JobKind.DPO,
      runId: "r3",
      data: [SHAPES],
      initCheckpointId: BASE,
      referenceCheckpointId: BASE,
      training: {
        steps: 5,
        batchSize: 2,
        learningRate: 0.001,
        beta: 50,
        seed: 11n,
        checkpointEvery: 2,
        emaDecay: 0.9,
      },
    });
    const first = await trainer(bus);
    await first.client.startJob({ spec: spec("crash") });
    await watch(first.client, "crash", (j) => j.checkpoints.length > 0);
    await first.mgr.close();
    const stored = (await first.client.getJob({ jobId: "crash" })).job!;
    expect(stored.state).toBe(JobState.RUNNING);
    const lastCkpt = Number(stored.checkpoints[stored.checkpoints.length - 1].step);
    expect([2, 4]).toContain(lastCkpt);

    const second = await trainer(bus);
    const updates = await watch(second.client, "crash");
    const resumedAt = updates.find((u) => u.state === JobState.RUNNING)!.step;
    expect(resumedAt).toBe(lastCkpt);
    const done = updates[updates.length - 1];
    expect(done.state).toBe(JobState.SUCCEEDED);
    expect(done.step).toBe(5);
    expect(done.checkpoints.map((c) => c.id)).toEqual([
      "jobs/crash@step-2",
      "jobs/crash@step-4",
      "jobs/crash",
    ]);

    await second.client.startJob({ spec: { ...spec("straight"), runId: "r4" } });
    await second.mgr.idle();
    const straight = (await second.client.getJob({ jobId: "straight" })).job!;
    expect(straight.state).toBe(JobState.SUCCEEDED);
    expect(done.finalCheckpoint!.sha256).toBe(straight.finalCheckpoint!.sha256);
    // The final checkpoint is announced exactly once despite the restart.
    const finals = (await events(bus, "idpo.events.r3.checkpoint_published")).filter(
      (e) => e.eventId === "r3/ckpt/jobs/crash",
    );
    expect(finals).toHaveLength(1);
    const ids = (await events(bus, "idpo.events.r3.>")).map((e) => e.eventId);
    expect(new Set(ids).size).toBe(ids.length);
    await second.mgr.close();
    await bus.close();
  });

  it("with 2 training workers, a restarted SPIN job resumes exactly and ends within float tolerance of 1 worker", async () => {
    const bus = await freshBus();
    const spec = (jobId: string, runId: string) => ({
      jobId,
      kind: JobKind.SPIN,
      runId,
      data: [SHAPES],
      initCheckpointId: BASE,
      referenceCheckpointId: BASE,
      training: {
        steps: 5,
        batchSize: 3,
        learningRate: 0.002,
        beta: 50,
        seed: 12n,
        checkpointEvery: 2,
        emaDecay: 0.9,
        maxGradNorm: 0.5,
      },
    });
    const first = await trainer(bus, 2);
    await first.client.startJob({ spec: spec("w2-crash", "r5") });
    await watch(first.client, "w2-crash", (j) => j.checkpoints.length > 0);
    await first.mgr.close();
    const second = await trainer(bus, 2);
    const updates = await watch(second.client, "w2-crash");
    const resumedAt = updates.find((u) => u.state === JobState.RUNNING)!.step;
    expect([2, 4]).toContain(resumedAt);
    expect(updates[updates.length - 1].state).toBe(JobState.SUCCEEDED);
    await second.client.startJob({ spec: spec("w2-straight", "r6") });
    await second.mgr.idle();
    await second.mgr.close();
    const single = await trainer(bus, 1);
    await single.client.startJob({ spec: spec("w1-straight", "r7") });
    await single.mgr.idle();
    const jobs = await Promise.all(
      ["w2-crash", "w2-straight", "w1-straight"].map(
        async (jobId) => (await single.client.getJob({ jobId })).job!,
      ),
    );
    for (const j of jobs) expect(j.state).toBe(JobState.SUCCEEDED);
    expect(jobs[0].finalCheckpoint!.sha256).toBe(jobs[1].finalCheckpoint!.sha256);
    const store = new CheckpointStore(bus.artifacts);
    const weights = async (id: string) => {
      const { model } = decodeCheckpoint((await store.get(id))!.bytes);
      const flat = tf.tidy(() => tf.concat([...model.params.values()].map((v) => tf.reshape(v, [-1]))));
      const out = flat.dataSync() as Float32Array;
      flat.dispose();
      model.dispose();
      return out;
    };
    const [w2, w1, base] = [
      await weights("jobs/w2-straight"),
      await weights("jobs/w1-straight"),
      await weights(BASE),
    ];
    let diff = 0;
    let moved = 0;
    let scale = 0;
    for (let i = 0; i < w1.length; i++) {
      diff = Math.max(diff, Math.abs(w2[i] - w1[i]));
      moved = Math.max(moved, Math.abs(w1[i] - base[i]));
      scale = Math.max(scale, Math.abs(w1[i]));
    }
    expect(moved).toBeGreaterThan(1e-3);
    expect(diff / scale).toBeLessThan(1e-4);
    await single.mgr.close();
    await bus.close();
    // Three jobs and three worker pools: generous on a loaded 2-core machine.
  }, 600_000);

  it("the service definition reports SERVING once the backend and the bus are up", async () => {
    const prev = process.env.IDPO_DATA_DIR;
    process.env.IDPO_DATA_DIR = join(root, "service-bus");
    try {
      const built = await buildServer(trainerService, {
        env: { IDPO_DATA_DIR: join(root, "service-bus") },
        logger: quiet,
      });
      const health = createClient(
        Health,
        createRouterTransport(built.routes, { router: built.routerOptions }),
      );
      let status = HealthCheckResponse_ServingStatus.UNKNOWN;
      for (let i = 0; i < 200 && status !== HealthCheckResponse_ServingStatus.SERVING; i++) {
        status = (await health.check({ service: TrainerService.typeName })).status;
        if (status !== HealthCheckResponse_ServingStatus.SERVING) await new Promise((r) => setTimeout(r, 25));
      }
      expect(status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      const client = createClient(
        TrainerService,
        createRouterTransport(built.routes, { router: built.routerOptions }),
      );
      expect((await client.listJobs({})).jobs).toEqual([]);
      built.beginShutdown();
      await built.instance.close?.();
    } finally {
      await closeSharedBus();
      if (prev === undefined) delete process.env.IDPO_DATA_DIR;
      else process.env.IDPO_DATA_DIR = prev;
    }
  });
});
