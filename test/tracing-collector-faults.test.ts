/**
 * A collector that goes away costs spans, never the job: `idpo quickstart` (a child process) runs a tiny run
 * exporting OTLP/HTTP JSON to a receiver that answers its first request and resets the connection of every
 * later one (as a collector shutting down does), and still exits 0, with the failure logged once.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toJsonString } from "@bufbuild/protobuf";
import { RunConfigSchema } from "@idpo/proto";
import { afterAll, describe, expect, it } from "vitest";
import { type OtlpReceiver, startOtlpReceiver } from "./support/otlp-receiver.js";
import { spawnProcess } from "./support/process.js";
import { tinyRunConfig } from "./support/tiny-run.js";

describe("tracing with a collector that resets connections", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-otlp-faults-"));
  let receiver: OtlpReceiver | undefined;

  afterAll(async () => {
    await receiver?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("idpo quickstart exits 0 and logs the export failure once", async () => {
    receiver = await startOtlpReceiver({ resetAfter: 1 });
    const configFile = join(dir, "run-config.json");
    // Smaller still than the tiny run: this test is about the process's exit, not the trace.
    const config = tinyRunConfig();
    config.baseTraining!.steps = 2;
    config.improverTraining!.steps = 2;
    config.policyTraining!.steps = 2;
    config.pairsPerIteration = 2;
    config.shardSize = 2;
    config.samplingSteps = 2;
    config.evalPrompts = config.evalPrompts.slice(0, 1);
    config.evalSamplesPerPrompt = 1;
    writeFileSync(configFile, toJsonString(RunConfigSchema, config));
    const report = join(dir, "report");
    const idpo = join(import.meta.dirname, "../cli/bin/idpo.js");
    const p = spawnProcess(
      process.execPath,
      [idpo, "quickstart", "--config", configFile, "--out", report, "--no-dashboard"],
      { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_EXPORTER_OTLP_PROTOCOL: "http/json" },
    );
    expect(await p.exited, p.output()).toBe(0);
    expect(p.output()).toContain("quickstart finished");
    expect(receiver.resets).toBeGreaterThan(0);
    // The one answered request: JSON, spans of the mesh's services.
    expect(receiver.contentTypes).toEqual(["application/json"]);
    expect(receiver.spans.length).toBeGreaterThan(0);
    for (const s of receiver.spans) expect(s.service).toMatch(/^idpo-/);
    const log = readFileSync(join(report, "services.log"), "utf8");
    expect(log).toContain('"msg":"run succeeded"');
    expect(log.match(/"msg":"trace export failed/g)).toHaveLength(1);
  }, 900_000);
});
