import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ControllerService, RunState } from "@idpo/proto";
import { buildServer, createLogger, type ListeningServer } from "@idpo/runtime";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RunningDashboard, startDashboard } from "./dashboard-server.js";
import { peerOfPath, proxyBaseUrl } from "./proxy.js";

/** A controller that knows one run and streams three updates of it; bearer auth on. */
async function fakeController(tokensFile: string): Promise<ListeningServer> {
  const built = await buildServer(
    {
      name: "controller",
      defaultPort: 0,
      grpcServices: [ControllerService.typeName],
      create: (ctx) => {
        ctx.setServing(true);
        return {
          routes: (router) =>
            router.service(ControllerService, {
              listRuns: async () => ({ runs: [{ runId: "r1", state: RunState.RUNNING }] }),
              async *watchRun(req) {
                for (let i = 1; i <= 3; i++) {
                  await new Promise((r) => setTimeout(r, 20));
                  yield { run: { runId: req.runId, iteration: i } };
                }
              },
            }),
        };
      },
    },
    {
      env: {},
      config: { host: "127.0.0.1", port: 0, authTokensFile: tokensFile },
      logger: createLogger("error", {}, () => {}),
    },
  );
  return built.listen();
}

describe("dashboard server", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-dash-"));
  let controller: ListeningServer;
  let dashboard: RunningDashboard;

  beforeAll(async () => {
    writeFileSync(join(dir, "tokens"), "s3cret\n");
    controller = await fakeController(join(dir, "tokens"));
    dashboard = await startDashboard({ port: 0, peers: { controller: controller.url }, env: {} });
  }, 60_000);

  afterAll(async () => {
    await dashboard?.close();
    await controller?.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("serves the app: the page, its bundled script and stylesheet", async () => {
    const page = await fetch(dashboard.url);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(await page.text()).toContain('<script type="module" src="/app.js">');
    const js = await fetch(new URL("/app.js", dashboard.url));
    expect(js.headers.get("content-type")).toContain("javascript");
    // The generated clients are in the bundle (method names survive minification).
    const text = await js.text();
    expect(text.includes("getEvaluationSamples") && text.includes("improveImages")).toBe(true);
    expect((await fetch(new URL("/app.css", dashboard.url))).status).toBe(200);
    expect((await fetch(new URL("/nope", dashboard.url))).status).toBe(404);
  });

  it("forwards gRPC-Web calls and streams to the service, whose bearer auth decides", async () => {
    const call = (token?: string) =>
      createClient(
        ControllerService,
        createGrpcWebTransport({
          baseUrl: dashboard.url,
          interceptors: token
            ? [
                (next) => (req) => {
                  req.header.set("authorization", `Bearer ${token}`);
                  return next(req);
                },
              ]
            : [],
        }),
      );
    const denied = await call()
      .listRuns({})
      .catch((e) => e);
    expect(denied).toBeInstanceOf(ConnectError);
    expect((denied as ConnectError).code).toBe(Code.Unauthenticated);
    const client = call("s3cret");
    expect((await client.listRuns({})).runs.map((r) => r.runId)).toEqual(["r1"]);
    const seen: number[] = [];
    for await (const res of client.watchRun({ runId: "r1" })) seen.push(res.run!.iteration);
    expect(seen).toEqual([1, 2, 3]);
  });

  it("answers 404 for paths no service owns and 502 when the service is unreachable", async () => {
    const other = await fetch(new URL("/evil.Service/Do", dashboard.url), { method: "POST" });
    expect(other.status).toBe(404);
    const down = await startDashboard({ port: 0, peers: { trainer: "http://127.0.0.1:1" }, env: {} });
    try {
      const res = await fetch(new URL("/idpo.trainer.v1.TrainerService/ListJobs", down.url), {
        method: "POST",
        headers: { "content-type": "application/grpc-web+proto" },
        body: new Uint8Array(5),
      });
      expect(res.status).toBe(502);
    } finally {
      await down.close();
    }
  });

  it("maps RPC paths to their service and dns:/// addresses to plain HTTP", () => {
    expect(peerOfPath("/idpo.improver.v1.ImproverService/ImproveImages")).toBe("improver");
    expect(peerOfPath("/idpo.controller.v1.ControllerService/WatchRun")).toBe("controller");
    expect(peerOfPath("/grpc.health.v1.Health/Check")).toBeUndefined();
    expect(peerOfPath("/idpo.controller.v1.ControllerService/../x")).toBeUndefined();
    expect(proxyBaseUrl("dns:///idpo-trainer:50053").href).toBe("http://idpo-trainer:50053/");
    expect(() => proxyBaseUrl("ftp://x:1")).toThrow(/expected http/);
  });
});
