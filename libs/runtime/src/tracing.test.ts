import { Code, ConnectError } from "@connectrpc/connect";
import { context, ROOT_CONTEXT } from "@opentelemetry/api";
import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import { InMemorySpanExporter, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace-base";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "./logger.js";
import { retryTransient } from "./retry.js";
import { runSpanContext } from "./run-trace.js";
import { GuardedExporter } from "./trace-export.js";
import { withService } from "./trace-provider.js";
import { flushTracing, initTracing, shutdownTracing, startSpanWithIds, tracer, withSpan } from "./tracing.js";

function capture() {
  const lines: { level: string; msg: string }[] = [];
  const logger = createLogger("debug", {}, (l) => lines.push(JSON.parse(l)));
  return { lines, logger };
}

/** An exporter that answers as told, or holds every export until `release` (a collector that hangs). */
class ScriptedExporter implements SpanExporter {
  received = 0;
  attempts = 0;
  held: (() => void)[] = [];
  failure = new Error("socket hang up");
  constructor(public answer: "ok" | "fail" | "hang") {}
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.received += spans.length;
    this.attempts++;
    if (this.answer === "hang") this.held.push(() => done({ code: ExportResultCode.SUCCESS }));
    else if (this.answer === "ok") done({ code: ExportResultCode.SUCCESS });
    else done({ code: ExportResultCode.FAILED, error: this.failure });
  }
  release(): void {
    for (const h of this.held.splice(0)) h();
  }
  shutdown(): Promise<void> {
    return Promise.reject(new Error("connection reset"));
  }
}

const exportOnce = (e: SpanExporter) =>
  new Promise<ExportResult>((resolve) => e.export([{} as ReadableSpan], resolve));

describe("GuardedExporter", () => {
  it("logs a collector outage once, and once more when it is over", async () => {
    const { lines, logger } = capture();
    const inner = new ScriptedExporter("fail");
    const guarded = new GuardedExporter(inner, "http://collector:4318/v1/traces", logger);
    for (let i = 0; i < 3; i++) expect((await exportOnce(guarded)).code).toBe(ExportResultCode.FAILED);
    // A broken connection is tried twice, other failures once.
    expect(inner.attempts).toBe(6);
    inner.failure = new Error("collector answered 400");
    await exportOnce(guarded);
    expect(inner.attempts).toBe(7);
    inner.answer = "ok";
    expect((await exportOnce(guarded)).code).toBe(ExportResultCode.SUCCESS);
    inner.answer = "fail";
    await exportOnce(guarded);
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual([
      "warn trace export failed; spans are dropped until the collector answers again",
      "info trace export recovered",
      "warn trace export failed; spans are dropped until the collector answers again",
    ]);
    expect(guarded.lostSpans).toBe(5);
    await expect(guarded.shutdown()).resolves.toBeUndefined();
  });

  it("drops a batch while the previous export is still pending", async () => {
    const inner = new ScriptedExporter("hang");
    const guarded = new GuardedExporter(inner, "c", capture().logger);
    const first = exportOnce(guarded);
    expect((await exportOnce(guarded)).code).toBe(ExportResultCode.FAILED);
    inner.release();
    expect((await first).code).toBe(ExportResultCode.SUCCESS);
    expect(inner.received).toBe(1);
  });
});

describe("initTracing", () => {
  afterEach(() => shutdownTracing());

  it("records each service's spans under its own resource, and the run root with the run's ids", async () => {
    const exporter = new InMemorySpanExporter();
    expect(
      initTracing({
        serviceName: "idpo-cli",
        exporter,
        env: { OTEL_RESOURCE_ATTRIBUTES: "k8s.pod.name=p-1" },
      }),
    ).toBe(true);
    expect(initTracing({ serviceName: "other", exporter })).toBe(false);
    tracer().startSpan("outside").end();
    context.with(withService(ROOT_CONTEXT, "scorer"), () => tracer().startSpan("inside").end());
    const ids = runSpanContext("run-1");
    startSpanWithIds("idpo.run", ids, {}, withService(ROOT_CONTEXT, "controller")).end();
    await flushTracing();
    const spans = Object.fromEntries(exporter.getFinishedSpans().map((s) => [s.name, s]));
    expect(spans.outside.resource.attributes["service.name"]).toBe("idpo-cli");
    expect(spans.inside.resource.attributes["service.name"]).toBe("idpo-scorer");
    expect(spans.inside.resource.attributes["service.namespace"]).toBe("idpo");
    expect(spans.inside.resource.attributes["k8s.pod.name"]).toBe("p-1");
    expect(spans.inside.resource.attributes["service.instance.id"]).toMatch(/:\d+$/);
    const root = spans["idpo.run"];
    expect(root.resource.attributes["service.name"]).toBe("idpo-controller");
    expect([root.spanContext().traceId, root.spanContext().spanId]).toEqual([ids.traceId, ids.spanId]);
    expect(root.parentSpanContext).toBeUndefined();
  });

  it("marks each retry of a call on the caller's span", async () => {
    const exporter = new InMemorySpanExporter();
    initTracing({ serviceName: "idpo-cli", exporter });
    let calls = 0;
    await withSpan("stage", {}, () =>
      retryTransient(
        async () => {
          if (++calls < 3) throw new ConnectError("trainer restarting", Code.Unavailable);
          return calls;
        },
        { budgetMs: 10_000, baseDelayMs: 1 },
      ),
    );
    await flushTracing();
    const [stage] = exporter.getFinishedSpans();
    expect(stage.events.map((e) => [e.name, e.attributes?.["idpo.retry.attempt"]])).toEqual([
      ["retry", 1],
      ["retry", 2],
    ]);
    expect(stage.events[0].attributes?.["exception.message"]).toContain("trainer restarting");
  });

  it("holds at most the queue and one batch for a collector that hangs, and shuts down anyway", async () => {
    const exporter = new ScriptedExporter("hang");
    initTracing({ serviceName: "idpo-cli", exporter, logger: capture().logger });
    for (let i = 0; i < 10_000; i++) tracer().startSpan(`s${i}`).end();
    await new Promise((r) => setTimeout(r, 300));
    expect(exporter.received).toBe(512);
    // The collector comes back: what was kept is sent; the rest was dropped, not buffered.
    exporter.answer = "ok";
    exporter.release();
    await flushTracing();
    expect(exporter.received).toBeLessThanOrEqual(512 + 2048);
    expect(exporter.received).toBeGreaterThan(512);
    await expect(shutdownTracing()).resolves.toBeUndefined();
  });
});
