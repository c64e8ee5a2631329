import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { type Bus, decodeReport, openBus, publishRunEvent } from "@idpo/bus";
import { type CheckpointPublished, ModelKind, RunEventSchema } from "@idpo/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { replicaConsumerName, subscribeCheckpointPublished } from "./run-events.js";

let bus: Bus;

beforeAll(async () => {
  bus = await openBus({ backend: "embedded", dataDir: mkdtempSync(join(tmpdir(), "idpo-run-events-")) });
});

afterAll(async () => {
  await bus.close();
});

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}

describe("run events", () => {
  it("makes consumer names that are valid durable names", () => {
    expect(replicaConsumerName("improver")).toMatch(/^improver-[A-Za-z0-9_-]+-\d+$/);
  });

  it("delivers checkpoint.published to the handler and terminates malformed ones", async () => {
    const got: CheckpointPublished[] = [];
    const reports: string[] = [];
    const audit = await bus.events.subscribe({ consumer: "ckpt-audit", filter: "idpo.reports.>" }, (m) => {
      reports.push(decodeReport(m).error);
    });
    const sub = await subscribeCheckpointPublished(bus, {
      consumer: "ckpt-test",
      onCheckpoint: (p) => void got.push(p),
    });
    await bus.events.publish("idpo.events.r2.checkpoint_published", new Uint8Array([0xff, 0xff]), {
      msgId: "bad-1",
    });
    const wrong = create(RunEventSchema, {
      eventId: "w",
      runId: "r2",
      payload: { case: "pairsReady", value: {} },
    });
    await bus.events.publish("idpo.events.r2.checkpoint_published", toBinary(RunEventSchema, wrong), {
      msgId: "w",
    });
    await publishRunEvent(bus.events, {
      eventId: "r2/ckpt/no-id",
      runId: "r2",
      payload: { case: "checkpointPublished", value: { isFinal: true } },
    });
    await publishRunEvent(bus.events, {
      eventId: "r2/ckpt/ok",
      runId: "r2",
      payload: {
        case: "checkpointPublished",
        value: { checkpoint: { id: "runs/r2/base", kind: ModelKind.POLICY }, isFinal: true },
      },
    });
    await until(() => got.length === 1 && reports.length === 3);
    expect(got[0].checkpoint?.id).toBe("runs/r2/base");
    expect(reports.join("\n")).toMatch(/undecodable RunEvent/);
    expect(reports.join("\n")).toMatch(
      /payload pairsReady does not match the subject's kind "checkpoint_published"/,
    );
    expect(reports.join("\n")).toMatch(/checkpoint_published without a checkpoint id/);
    await sub.stop();
    await audit.stop();
  });
});
