/**
 * The Trainer on a real nats-server that is killed (SIGKILL) mid-job and restarted: progress and job-state
 * writes ride out the outage while training goes on, the final checkpoint waits for the bus, and the job
 * succeeds with every step done once. A run's job with checkpoint_every 0 still checkpoints by time, so a
 * trainer that dies mid-job is resumed from its last checkpoint, not from step 0.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, fromBinary } from "@bufbuild/protobuf";
import { type Bus, openBus } from "@idpo/bus";
import { initBackend } from "@idpo/diffusion";
import { type Job, JobKind, JobSchema, JobSpecSchema, JobState, RunEventSchema } from "@idpo/proto";
import { createLogger } from "@idpo/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createJobManager } from "../services/trainer/src/index.js";
import { startTestNats, type TestNats } from "./support/nats.js";

const STEPS = 6;

describe("the trainer across a NATS restart and a crash", () => {
  let nats: TestNats;
  let root: string;
  const buses: Bus[] = [];

  beforeAll(async () => {
    await initBackend({ log: () => {} });
    nats = await startTestNats();
    root = mkdtempSync(join(tmpdir(), "idpo-trainer-outage-"));
  });
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close({ timeoutMs: 0 })));
    await nats?.stop();
    rmSync(root, { recursive: true, force: true });
  });

  it("keeps training through a SIGKILL of nats-server and succeeds once it is back", {
    timeout: 400_000,
  }, async () => {
    const open = async () => {
      const b = await openBus({ backend: "nats", natsUrl: nats.url, namePrefix: "outage" });
      buses.push(b);
      return b;
    };
    const bus = await open();
    const logs: string[] = [];
    const logger = createLogger("info", {}, (line) => void logs.push(line));
    const mgr = await createJobManager({ bus, logger, dataDir: join(root, "data"), progressEvery: 1 });
    const spec = create(JobSpecSchema, {
      jobId: "outage-1",
      runId: "outage-run",
      kind: JobKind.PRETRAIN,
      data: ["shapes://?pairs=12&size=16&seed=3"],
      modelPreset: "tiny",
      training: { steps: STEPS, batchSize: 2, seed: 1n, checkpointEvery: 2 },
    });
    await mgr.startJob(spec);
    let down: { from: number; stepsWhileDown: number; over: boolean } | undefined;
    let restarted: Promise<void> | undefined;
    let last: Job | undefined;
    for await (const job of mgr.watchJob("outage-1", new AbortController().signal)) {
      last = job;
      if (down && !down.over) down.stepsWhileDown = job.step - down.from;
      if (!down && job.state === JobState.RUNNING && job.step >= 1) {
        const d = { from: job.step, stepsWhileDown: 0, over: false };
        down = d;
        await nats.kill();
        // Down for 3 s, as a restarted NATS pod would be; the watch goes on meanwhile.
        restarted = new Promise((r) => setTimeout(r, 3_000))
          .then(() => nats.restart())
          .then(() => {
            d.over = true;
          });
      }
    }
    await restarted;
    expect(down, "the server was never killed").toBeDefined();
    expect(last?.state, `${last?.error}\n${logs.join("")}`).toBe(JobState.SUCCEEDED);
    expect(last?.step).toBe(STEPS);
    // Training went on while the bus was down: steps were taken before the server came back.
    expect(down!.stepsWhileDown).toBeGreaterThan(0);
    expect(last?.finalCheckpoint?.id).toBe("jobs/outage-1");

    // What another process reads from the bus after the restart: the job's final state and its checkpoint.
    const reader = await open();
    const stored = await reader.state.get("jobs.outage-1");
    const job = fromBinary(JobSchema, stored!.value);
    expect(job.state).toBe(JobState.SUCCEEDED);
    expect(job.step).toBe(STEPS);
    expect(await reader.artifacts.info("checkpoints/jobs/outage-1.safetensors")).toBeDefined();
    // Progress published after the restart caught up to the last step; the final checkpoint was announced.
    const kinds = new Map<string, number>();
    const sub = await reader.events.subscribe(
      { consumer: "outage-audit", filter: "idpo.events.outage-run.>", start: "all" },
      (m) => {
        const ev = fromBinary(RunEventSchema, m.data);
        if (ev.payload.case === "jobProgress") kinds.set("progress", ev.payload.value.step);
        if (ev.payload.case === "checkpointPublished" && ev.payload.value.isFinal) kinds.set("final", 1);
      },
    );
    const until = Date.now() + 10_000;
    while (Date.now() < until && !(kinds.get("final") === 1 && kinds.get("progress") === STEPS)) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await sub.stop();
    expect(kinds.get("progress")).toBe(STEPS);
    expect(kinds.get("final")).toBe(1);
    await mgr.close();
  });

  it("checkpoints a run's job by time when checkpoint_every is 0, and a new trainer resumes from it", {
    timeout: 400_000,
  }, async () => {
    const bus = await openBus({ backend: "nats", natsUrl: nats.url, namePrefix: "timed" });
    buses.push(bus);
    const logs: string[] = [];
    const logger = createLogger("info", {}, (line) => void logs.push(line));
    const dataDir = join(root, "data");
    // Every step is past the interval here; the default is 5 minutes of training.
    const first = await createJobManager({ bus, logger, dataDir, progressEvery: 1, runCheckpointMs: 1 });
    const spec = (jobId: string, runId: string) =>
      create(JobSpecSchema, {
        jobId,
        runId,
        kind: JobKind.PRETRAIN,
        data: ["shapes://?pairs=12&size=16&seed=3"],
        modelPreset: "tiny",
        training: { steps: 6, batchSize: 2, seed: 2n },
      });
    await first.startJob(spec("timed-1", "timed-run"));
    for await (const job of first.watchJob("timed-1", new AbortController().signal)) {
      if (job.checkpoints.some((c) => c.id === "jobs/timed-1@step-2")) break;
    }
    // A trainer that goes away mid-job (as a killed pod does): the job stays RUNNING in KV.
    await first.close();
    const second = await createJobManager({ bus, logger, dataDir, progressEvery: 1, runCheckpointMs: 1 });
    let last: Job | undefined;
    for await (const job of second.watchJob("timed-1", new AbortController().signal)) last = job;
    expect(last?.state, logs.join("")).toBe(JobState.SUCCEEDED);
    const starts = logs
      .map((l) => JSON.parse(l) as { msg: string; jobId?: string; fromStep?: number })
      .filter((l) => l.msg === "job started" && l.jobId === "timed-1");
    expect(starts.map((l) => l.fromStep)[0]).toBe(0);
    expect(starts.length).toBe(2);
    expect(starts[1].fromStep).toBeGreaterThanOrEqual(2);
    // A job outside a run keeps the contract's checkpoint_every 0: only the final checkpoint.
    await second.startJob(spec("adhoc-1", ""));
    for await (const job of second.watchJob("adhoc-1", new AbortController().signal)) last = job;
    expect(last?.state).toBe(JobState.SUCCEEDED);
    expect(last?.checkpoints.map((c) => c.id)).toEqual(["jobs/adhoc-1"]);
    await second.close();
  });
});
