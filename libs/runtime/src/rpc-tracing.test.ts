import { createClient } from "@connectrpc/connect";
import { ControllerService } from "@idpo/proto";
import { SpanKind } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPeerTransport } from "./client.js";
import { createLogger } from "./logger.js";
import { runSpanContext } from "./run-trace.js";
import { buildServer, type ListeningServer, type ServiceDefinition } from "./server.js";
import { flushTracing, initTracing, shutdownTracing } from "./tracing.js";

/** A controller stand-in: GetRun answers, WatchRun sends two runs and ends. */
const stub: ServiceDefinition = {
  name: "controller",
  defaultPort: 0,
  grpcServices: [ControllerService.typeName],
  create: (ctx) => {
    ctx.setServing(true);
    return {
      routes: (router) =>
        router.service(ControllerService, {
          getRun: (req) => ({ run: { runId: req.runId } }),
          async *watchRun() {
            yield { run: { runId: "a" } };
            yield { run: { runId: "b" } };
          },
        }),
    };
  },
};

describe("gRPC tracing interceptors", () => {
  const exporter = new InMemorySpanExporter();
  let server: ListeningServer;
  let spans: ReadableSpan[] = [];

  beforeAll(async () => {
    initTracing({ serviceName: "idpo-cli", exporter });
    const built = await buildServer(stub, {
      config: { host: "127.0.0.1", port: 0 },
      logger: createLogger("error", {}, () => {}),
    });
    server = await built.listen();
    const client = createClient(ControllerService, createPeerTransport(server.url));
    await client.getRun({ runId: "run-7" });
    // A reader that stops at the last message without telling the stream (connect drops `return`).
    for await (const res of client.watchRun({ runId: "run-7" })) if (res.run?.runId === "b") break;
    await new Promise((r) => setTimeout(r, 200));
    await flushTracing();
    spans = exporter.getFinishedSpans();
  });

  afterAll(async () => {
    await server.shutdown();
    await shutdownTracing();
  });

  it("pairs each call's CLIENT span, in the caller's service, with the SERVER span of the callee", () => {
    for (const method of ["GetRun", "WatchRun"]) {
      const name = `idpo.controller.v1.ControllerService/${method}`;
      const client = spans.find((s) => s.name === name && s.kind === SpanKind.CLIENT);
      const srv = spans.find((s) => s.name === name && s.kind === SpanKind.SERVER);
      expect(client?.resource.attributes["service.name"], method).toBe("idpo-cli");
      expect(srv?.resource.attributes["service.name"], method).toBe("idpo-controller");
      expect(srv?.parentSpanContext?.spanId).toBe(client?.spanContext().spanId);
      expect(client?.attributes).toMatchObject({
        "rpc.system": "grpc",
        "rpc.service": "idpo.controller.v1.ControllerService",
        "rpc.method": method,
        "server.address": "127.0.0.1",
        "rpc.grpc.status_code": 0,
      });
    }
  });

  it("links a request that names a run to the run's root span", () => {
    const srv = spans.find((s) => s.name.endsWith("/GetRun") && s.kind === SpanKind.SERVER)!;
    const run = runSpanContext("run-7");
    expect(srv.links.map((l) => [l.context.traceId, l.context.spanId])).toEqual([[run.traceId, run.spanId]]);
  });

  it("leaves health checks untraced", () => {
    expect(spans.filter((s) => s.name.startsWith("grpc.health"))).toEqual([]);
  });
});
