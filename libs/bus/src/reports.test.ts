import { describe, expect, it } from "vitest";
import { decodeReport, encodeReport, reportMsgId } from "./reports.js";
import type { TerminationReport } from "./types.js";

describe("termination reports", () => {
  it("round-trip through headers and body, keeping the original headers and flattening errors", () => {
    const report: TerminationReport = {
      source: "work",
      consumer: "shard-workers",
      subject: "idpo.work.shards",
      seq: 42,
      msgId: "run-1/iter-2/shard-3",
      deliveryCount: 3,
      reason: "max-deliver",
      error: "line one\r\nline two",
      data: new Uint8Array([1, 2, 3]),
      headers: { "Nats-Msg-Id": "run-1/iter-2/shard-3", traceparent: "00-abc-def-01" },
    };
    const enc = encodeReport(report);
    expect(enc.subject).toBe("idpo.reports.work.shard-workers");
    expect(enc.headers["Nats-Msg-Id"]).toBeUndefined();
    const back = decodeReport({ data: enc.data, headers: enc.headers });
    expect(back).toEqual({ ...report, error: "line one | line two" });
    expect(reportMsgId(report)).toBe("report:work:shard-workers:42");
  });

  it("refuses a message that is not a report", () => {
    expect(() => decodeReport({ data: new Uint8Array(0), headers: {} })).toThrow(
      /Idpo-Report-Source is missing/,
    );
  });
});
