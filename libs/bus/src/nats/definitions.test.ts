import { describe, expect, it } from "vitest";
import { SubjectMapper } from "../subjects.js";
import { busDefinitions, natsConsumerConfig, natsStreamConfig } from "./definitions.js";

describe("bus definitions", () => {
  it("names streams, buckets and subjects with the prefix", () => {
    const d = busDefinitions("t1");
    expect([d.events.name, d.reports.name, d.work.stream.name]).toEqual([
      "t1_IDPO_EVENTS",
      "t1_IDPO_REPORTS",
      "t1_IDPO_WORK",
    ]);
    expect([d.stateBucket, d.artifactsBucket]).toEqual(["t1_idpo_state", "t1_idpo_artifacts"]);
    const cfg = natsStreamConfig(d.work.stream, d.limits, new SubjectMapper("t1"));
    expect(cfg).toMatchObject({
      subjects: ["t1.idpo.work.>"],
      retention: "workqueue",
      storage: "file",
      num_replicas: 1,
    });
    expect(cfg.duplicate_window).toBe(120_000 * 1e6);
    const plain = busDefinitions();
    expect(plain.events.name).toBe("IDPO_EVENTS");
    expect(natsStreamConfig(plain.events, plain.limits, new SubjectMapper("")).subjects).toEqual([
      "idpo.events.>",
    ]);
  });

  it("leaves max_deliver to the client and maps start positions", () => {
    const base = { durable: "c", filter: "idpo.events.>", ackWaitMs: 1500, maxAckPending: 10 };
    expect(natsConsumerConfig({ ...base, start: "all" })).toMatchObject({
      max_deliver: -1,
      ack_wait: 1500 * 1e6,
      ack_policy: "explicit",
      deliver_policy: "all",
    });
    expect(natsConsumerConfig({ ...base, start: { seq: 7 } })).toMatchObject({
      deliver_policy: "by_start_sequence",
      opt_start_seq: 7,
    });
    const t = new Date("2025-01-02T03:04:05.000Z");
    expect(natsConsumerConfig({ ...base, start: { time: t } })).toMatchObject({
      deliver_policy: "by_start_time",
      opt_start_time: "2025-01-02T03:04:05.000Z",
    });
  });

  it("rejects bad limits and prefixes loudly", () => {
    expect(() => busDefinitions("bad.prefix")).toThrow(/bus name prefix "bad.prefix"/);
    expect(() => busDefinitions("", { workMaxDeliver: 0 })).toThrow(
      /workMaxDeliver must be a positive number/,
    );
    expect(() => busDefinitions("", { pullExpiresMs: 10 })).toThrow(/pullExpiresMs must be ≥ 1000/);
    expect(() => busDefinitions("", { storage: "disk" as "file" })).toThrow(/storage/);
  });
});
