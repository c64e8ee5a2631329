/**
 * `idpo quickstart`'s machinery on a tiny run (the whole mesh in this process, embedded bus, real gRPC on
 * loopback): the report folder, and the run's trace as a trace viewer reads it, exported over OTLP/HTTP to
 * in-process receivers in protobuf and in JSON.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type QuickstartResult, runQuickstart } from "@idpo/cli";
import { decodePng } from "@idpo/data";
import { RunState } from "@idpo/proto";
import { initTracing, runSpanContext, shutdownTracing } from "@idpo/runtime";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type OtlpReceiver,
  type ReceivedSpan,
  SPAN_KIND,
  startOtlpReceiver,
} from "./support/otlp-receiver.js";
import { TINY_EVAL_PROMPTS as EVAL_PROMPTS, tinyRunConfig } from "./support/tiny-run.js";

describe("quickstart (in-process mesh) and run tracing", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-qs-test-"));
  let protobuf: OtlpReceiver;
  let json: OtlpReceiver;
  let result: QuickstartResult;
  let spans: ReceivedSpan[] = [];
  let progress = "";

  beforeAll(async () => {
    protobuf = await startOtlpReceiver();
    json = await startOtlpReceiver();
    // The collector path (protobuf, as OTEL_EXPORTER_OTLP_PROTOCOL defaults to) plus the same spans in JSON.
    initTracing({
      serviceName: "idpo-quickstart",
      endpoint: protobuf.url,
      protocol: "http/protobuf",
      exporter: new OTLPTraceExporter({ url: `${json.url}/v1/traces`, timeoutMillis: 30_000 }),
    });
    result = await runQuickstart(
      {
        iterations: 1,
        pairs: 8,
        seed: 5,
        out: join(dir, "report"),
        dataDir: join(dir, "data"),
        config: tinyRunConfig(),
      },
      { err: (t) => (progress += t), tty: false },
    );
    // Sends what is left; then what the receivers decoded is final.
    await shutdownTracing();
    spans = protobuf.spans;
  }, 300_000);

  afterAll(async () => {
    await shutdownTracing();
    await protobuf?.close();
    await json?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs to SUCCEEDED with live progress and writes the report folder", () => {
    expect(result.run.state, result.run.error).toBe(RunState.SUCCEEDED);
    expect(progress).toMatch(/base · \d+\/16/);
    expect(progress).toMatch(/loss \d/);
    expect(progress).toContain("generate · iteration 1/1");
    expect(result.reportDir).toBe(join(dir, "report"));
    expect(readFileSync(join(dir, "report", "services.log"), "utf8")).toContain('"msg":"run succeeded"');
    for (const f of [
      "metrics.json",
      "rewards.txt",
      "rewards.png",
      "rewards.svg",
      "pairs-iter-1.png",
      "samples.png",
      "services.log",
    ]) {
      expect(existsSync(join(dir, "report", f)), f).toBe(true);
    }
    const metrics = JSON.parse(readFileSync(join(dir, "report", "metrics.json"), "utf8"));
    expect(metrics.run.runId).toBe(result.run.runId);
    expect(metrics.run.iterations[0].evaluation.reward.n).toBe(EVAL_PROMPTS.length * 2);
    expect(metrics.stages.map((s: { stage: string }) => s.stage)).toEqual([
      "BASE",
      "IMPROVER",
      "EVALUATE",
      "GENERATE",
      "TRAIN",
      "EVALUATE",
    ]);
    expect(readFileSync(join(dir, "report", "rewards.txt"), "utf8")).toMatch(
      /iteration 1\s+0\.\d{4} ± 0\.\d{4}/,
    );
    // Pairs grid: losers above winners (2 rows of 16-pixel images at 4×); samples: base and iteration 1.
    const pairs = decodePng(readFileSync(join(dir, "report", "pairs-iter-1.png")));
    expect(pairs.height).toBe(2 + 2 * (64 + 2));
    const samples = decodePng(readFileSync(join(dir, "report", "samples.png")));
    expect(samples.height).toBe(2 + 2 * (64 + 2));
    expect(samples.width).toBe(2 + EVAL_PROMPTS.length * 2 * (64 + 2));
  });

  const KIND = Object.fromEntries(Object.entries(SPAN_KIND).map(([k, v]) => [v, k]));
  const rpc = (s: ReceivedSpan) => `${s.attributes["rpc.service"]}/${s.attributes["rpc.method"]}`;
  const byId = () => new Map(spans.map((s) => [s.spanId, s]));

  it("exports the same spans in protobuf and in JSON", () => {
    expect(new Set(protobuf.contentTypes)).toEqual(new Set(["application/x-protobuf"]));
    expect(new Set(json.contentTypes)).toEqual(new Set(["application/json"]));
    const key = (s: ReceivedSpan) =>
      [s.traceId, s.spanId, s.parentSpanId, s.name, s.kind, s.service, s.startNs, s.endNs, s.statusCode].join(
        " ",
      );
    expect(json.spans.map(key).sort()).toEqual(protobuf.spans.map(key).sort());
    expect(spans.length).toBeGreaterThan(50);
  });

  it("gives the run one trace under one exported root span, with every stage, job, shard and event in it", () => {
    const root = runSpanContext(result.run.runId);
    const inRun = spans.filter((s) => s.traceId === root.traceId);
    const roots = inRun.filter((s) => s.parentSpanId === "");
    expect(roots.map((s) => [s.name, s.spanId, s.service])).toEqual([
      ["idpo.run", root.spanId, "idpo-controller"],
    ]);
    expect(roots[0].attributes["idpo.run.state"]).toBe("SUCCEEDED");
    expect(roots[0].attributes["idpo.run_id"]).toBe(result.run.runId);
    const names = new Set(inRun.map((s) => s.name));
    for (const stage of ["base", "improver", "generate", "train", "evaluate"]) {
      expect(names, `stage span idpo.run.${stage}`).toContain(`idpo.run.${stage}`);
    }
    const jobs = inRun.filter((s) => s.name === "trainer.job");
    expect(jobs.map((s) => s.attributes["idpo.job.kind"]).sort()).toEqual(["DPO", "IMPROVER", "PRETRAIN"]);
    expect(jobs.every((s) => s.service === "idpo-trainer")).toBe(true);
    expect(inRun.filter((s) => s.name === "generator.pair_shard")).toHaveLength(2);
    // Every message about the run (state changes, checkpoints, pairs, progress) was sent inside its trace,
    // and every delivery of them processed there.
    const aboutRun = spans.filter((s) =>
      String(s.attributes["messaging.destination.name"] ?? "").startsWith(`idpo.events.${result.run.runId}.`),
    );
    const sent = aboutRun.filter((s) => s.kind === SPAN_KIND.PRODUCER);
    expect([...new Set(sent.map((s) => s.name.split(".").pop()))]).toEqual(
      expect.arrayContaining(["run_state_changed", "checkpoint_published", "pairs_ready", "job_progress"]),
    );
    for (const s of aboutRun) expect(s.traceId, `${s.service} ${s.name}`).toBe(root.traceId);
  });

  it("leaves no orphan: every parent span was exported", () => {
    const ids = new Set(spans.map((s) => s.spanId));
    const orphans = spans.filter((s) => s.parentSpanId !== "" && !ids.has(s.parentSpanId));
    expect(orphans.map((s) => `${s.service}: ${s.name}`)).toEqual([]);
  });

  it("names each service in its own resource", () => {
    const services = new Set(spans.map((s) => s.service));
    for (const name of ["controller", "generator", "improver", "trainer", "scorer", "quickstart"]) {
      expect(services).toContain(`idpo-${name}`);
    }
    for (const s of spans) {
      expect(s.resource["service.namespace"]).toBe("idpo");
      expect(String(s.resource["service.instance.id"] ?? "")).not.toBe("");
    }
    // A server span is recorded by the service that serves it (idpo.<domain>.v1.* → idpo-<domain>).
    for (const s of spans.filter((s) => s.kind === SPAN_KIND.SERVER)) {
      expect(s.service, rpc(s)).toBe(`idpo-${String(s.attributes["rpc.service"]).split(".")[1]}`);
    }
  });

  it("pairs every server span with its caller's client span, and links request traces to the run", () => {
    const index = byId();
    const methods = new Set<string>();
    for (const server of spans.filter((s) => s.kind === SPAN_KIND.SERVER)) {
      const client = index.get(server.parentSpanId);
      expect(client?.kind, rpc(server)).toBe(SPAN_KIND.CLIENT);
      expect(rpc(client!)).toBe(rpc(server));
      expect(client!.attributes["rpc.system"]).toBe("grpc");
      expect(client!.attributes["server.port"]).toBeGreaterThan(0);
      expect(server.attributes["rpc.grpc.status_code"]).toBeTypeOf("number");
      methods.add(rpc(server));
    }
    // Unary and server-streaming calls of every service the run uses.
    for (const m of [
      "idpo.controller.v1.ControllerService/CreateRun",
      "idpo.controller.v1.ControllerService/WatchRun",
      "idpo.trainer.v1.TrainerService/StartJob",
      "idpo.trainer.v1.TrainerService/WatchJob",
      "idpo.generator.v1.GeneratorService/GenerateImagesStream",
      "idpo.improver.v1.ImproverService/ImproveImages",
      "idpo.scorer.v1.ScorerService/Evaluate",
    ]) {
      expect(methods).toContain(m);
    }
    const root = runSpanContext(result.run.runId);
    const createRun = spans.find(
      (s) => s.kind === SPAN_KIND.SERVER && s.attributes["rpc.method"] === "CreateRun",
    )!;
    expect(createRun.traceId).not.toBe(root.traceId);
    expect(createRun.links).toContainEqual({ traceId: root.traceId, spanId: root.spanId });
  });

  it("follows a shard from the controller through the work queue to the generator and the improver", () => {
    const index = byId();
    const root = runSpanContext(result.run.runId);
    const improve = spans.find(
      (s) =>
        s.kind === SPAN_KIND.SERVER &&
        s.attributes["rpc.method"] === "ImproveImages" &&
        s.traceId === root.traceId,
    )!;
    const chain: ReceivedSpan[] = [];
    for (let s: ReceivedSpan | undefined = improve; s; s = index.get(s.parentSpanId)) chain.push(s);
    expect(chain.map((s) => `${s.service} ${KIND[s.kind]} ${s.name}`)).toEqual([
      "idpo-improver SERVER idpo.improver.v1.ImproverService/ImproveImages",
      "idpo-generator CLIENT idpo.improver.v1.ImproverService/ImproveImages",
      "idpo-generator INTERNAL generator.pair_shard",
      "idpo-generator CONSUMER process idpo.work.shards",
      "idpo-controller PRODUCER enqueue idpo.work.shards",
      "idpo-controller INTERNAL idpo.run.generate",
      "idpo-controller INTERNAL idpo.run",
    ]);
    const [consumer, producer] = [chain[3], chain[4]];
    expect(producer.attributes).toMatchObject({
      "messaging.system": "nats",
      "messaging.operation.type": "send",
      "messaging.destination.name": "idpo.work.shards",
    });
    expect(consumer.attributes).toMatchObject({
      "messaging.system": "nats",
      "messaging.operation.type": "process",
      "messaging.destination.name": "idpo.work.shards",
      "messaging.message.id": producer.attributes["messaging.message.id"],
    });
  });
});
