import { create, toBinary } from "@bufbuild/protobuf";
import { RunEventSchema } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { MalformedMessageError } from "./errors.js";
import { decodeRunEvent } from "./run-events.js";

const ready = create(RunEventSchema, {
  eventId: "r1/ready/0",
  runId: "r1",
  payload: { case: "pairsReady", value: { iteration: 1, shardIndex: 0, pairCount: 4 } },
});
const delivery = (subject: string, msgId = ready.eventId) => ({
  subject,
  msgId,
  data: toBinary(RunEventSchema, ready),
});

describe("decodeRunEvent", () => {
  it("returns the event, narrowed to the expected payload", () => {
    const ev = decodeRunEvent(delivery("idpo.events.r1.pairs_ready"), "pairsReady");
    expect(ev.payload.value.pairCount).toBe(4);
    expect(decodeRunEvent(delivery("idpo.events.r1.pairs_ready", "")).eventId).toBe("r1/ready/0");
  });

  it("rejects as malformed what does not match its subject, msgId or the expected payload", () => {
    const reject = (msg: ReturnType<typeof delivery>, pattern: RegExp, expected?: "shardFailed") => {
      expect(() => (expected ? decodeRunEvent(msg, expected) : decodeRunEvent(msg))).toThrow(
        MalformedMessageError,
      );
      expect(() => (expected ? decodeRunEvent(msg, expected) : decodeRunEvent(msg))).toThrow(pattern);
    };
    reject(
      { ...delivery("idpo.events.r1.pairs_ready"), data: new Uint8Array([0xff]) },
      /undecodable RunEvent/,
    );
    reject(delivery("idpo.events.r2.pairs_ready"), /does not match the subject's run "r2"/);
    reject(delivery("idpo.events.r1.shard_failed"), /does not match the subject's kind "shard_failed"/);
    reject(delivery("idpo.events.r1.pairs_ready", "other"), /differs from its Nats-Msg-Id "other"/);
    reject(
      delivery("idpo.events.r1.pairs_ready"),
      /expected a shard_failed payload, got pairs_ready/,
      "shardFailed",
    );
  });
});
