import { mkdtempSync, writeFileSync } from "node:fs";
import * as http from "node:http";
import * as http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport, type Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import {
  Health,
  ScoreResponseSchema,
  ScorerService,
  HealthCheckResponse_ServingStatus as Status,
} from "@idpo/proto";
import { afterEach, describe, expect, it } from "vitest";
import { ConfigError, loadRuntimeConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { buildServer, type ListeningServer, type ServiceContext, type ServiceDefinition } from "./server.js";

const quiet = createLogger("error", {}, () => {});

/** A scorer-shaped test service: Score echoes the prompt count after an optional delay and honours deadlines. */
function testService(opts: { delayMs?: number; ready?: boolean } = {}) {
  let ctxRef: ServiceContext | undefined;
  const def: ServiceDefinition = {
    name: "scorer",
    defaultPort: 0,
    grpcServices: ["idpo.scorer.v1.ScorerService"],
    create(ctx) {
      ctxRef = ctx;
      if (opts.ready !== false) ctx.setServing(true);
      return {
        routes: (router) =>
          router.service(ScorerService, {
            async score(req, hctx) {
              if (opts.delayMs) {
                await new Promise<void>((resolve, reject) => {
                  const t = setTimeout(resolve, opts.delayMs);
                  hctx.signal.addEventListener("abort", () => {
                    clearTimeout(t);
                    reject(new ConnectError("deadline", Code.DeadlineExceeded));
                  });
                });
              }
              return create(ScoreResponseSchema, {
                scores: req.prompts.map((_, i) => ({ reward: i })),
              });
            },
            evaluate() {
              throw new ConnectError("not part of this test", Code.Unimplemented);
            },
          }),
      };
    },
  };
  return { def, ctx: () => ctxRef! };
}

describe("runtime over an in-memory transport", () => {
  it("reports NOT_SERVING until the service declares itself ready", async () => {
    const svc = testService({ ready: false });
    const built = await buildServer(svc.def, { env: {}, logger: quiet });
    const transport = createRouterTransport(built.routes, { router: built.routerOptions });
    const health = createClient(Health, transport);
    expect((await health.check({})).status).toBe(Status.NOT_SERVING);
    expect((await health.check({ service: "idpo.scorer.v1.ScorerService" })).status).toBe(Status.NOT_SERVING);
    svc.ctx().setServing(true);
    expect((await health.check({})).status).toBe(Status.SERVING);
    expect((await health.check({ service: "idpo.scorer.v1.ScorerService" })).status).toBe(Status.SERVING);
    await expect(health.check({ service: "no.such.Service" })).rejects.toMatchObject({ code: Code.NotFound });
  });

  it("streams health changes through Watch", async () => {
    const svc = testService({ ready: false });
    const built = await buildServer(svc.def, { env: {}, logger: quiet });
    const health = createClient(Health, createRouterTransport(built.routes, { router: built.routerOptions }));
    const seen: Status[] = [];
    const ac = new AbortController();
    const done = (async () => {
      try {
        for await (const r of health.watch({}, { signal: ac.signal })) {
          seen.push(r.status);
          if (seen.length === 1) svc.ctx().setServing(true);
          if (seen.length === 2) ac.abort();
        }
      } catch (err) {
        if (ConnectError.from(err).code !== Code.Canceled) throw err;
      }
    })();
    await done;
    expect(seen).toEqual([Status.NOT_SERVING, Status.SERVING]);
  });

  it("answers the service's RPCs", async () => {
    const built = await buildServer(testService().def, { env: {}, logger: quiet });
    const client = createClient(
      ScorerService,
      createRouterTransport(built.routes, { router: built.routerOptions }),
    );
    const res = await client.score({ prompts: ["a", "b", "c"] });
    expect(res.scores.map((s) => s.reward)).toEqual([0, 1, 2]);
  });
});

describe("runtime over a real port", () => {
  let server: ListeningServer | undefined;
  afterEach(async () => {
    await server?.shutdown();
    server = undefined;
  });

  async function start(def: ServiceDefinition, env: Record<string, string> = {}) {
    const built = await buildServer(def, {
      env: { IDPO_HOST: "127.0.0.1", IDPO_PORT: "0", ...env },
      logger: quiet,
    });
    server = await built.listen();
    return server;
  }

  it("speaks gRPC (HTTP/2), gRPC-Web and Connect (HTTP/1.1) on one port", async () => {
    const s = await start(testService().def);
    const transports: Transport[] = [
      createGrpcTransport({ baseUrl: s.url }),
      createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: s.url, httpVersion: "2" }),
    ];
    for (const t of transports) {
      const res = await createClient(ScorerService, t).score({ prompts: ["x", "y"] });
      expect(res.scores).toHaveLength(2);
      expect((await createClient(Health, t).check({})).status).toBe(Status.SERVING);
    }
  });

  it("honours the caller's deadline", async () => {
    const s = await start(testService({ delayMs: 5000 }).def);
    const client = createClient(ScorerService, createGrpcTransport({ baseUrl: s.url }));
    await expect(client.score({ prompts: ["x"] }, { timeoutMs: 100 })).rejects.toMatchObject({
      code: Code.DeadlineExceeded,
    });
  });

  it("refuses messages over the configured size with RESOURCE_EXHAUSTED", async () => {
    const s = await start(testService().def, { IDPO_MAX_MESSAGE_BYTES: "2048" });
    const client = createClient(ScorerService, createGrpcTransport({ baseUrl: s.url }));
    await expect(client.score({ prompts: ["x".repeat(4096)] })).rejects.toMatchObject({
      code: Code.ResourceExhausted,
    });
    expect((await client.score({ prompts: ["small"] })).scores).toHaveLength(1);
  });

  it("requires a bearer token when a tokens file is configured, but keeps health open", async () => {
    const dir = mkdtempSync(join(tmpdir(), "idpo-auth-"));
    const file = join(dir, "tokens");
    writeFileSync(file, "# tokens\nsecret-one\nsecret-two\n");
    const s = await start(testService().def, { IDPO_AUTH_TOKENS_FILE: file });
    const anon = createGrpcTransport({ baseUrl: s.url });
    await expect(createClient(ScorerService, anon).score({ prompts: ["x"] })).rejects.toMatchObject({
      code: Code.Unauthenticated,
    });
    const wrong = createClient(ScorerService, anon);
    await expect(
      wrong.score({ prompts: ["x"] }, { headers: { authorization: "Bearer nope" } }),
    ).rejects.toMatchObject({ code: Code.Unauthenticated });
    const ok = await wrong.score({ prompts: ["x"] }, { headers: { authorization: "Bearer secret-two" } });
    expect(ok.scores).toHaveLength(1);
    expect((await createClient(Health, anon).check({})).status).toBe(Status.SERVING);
  });

  it("answers an unauthenticated call from its headers, before any of its body is sent", async () => {
    const dir = mkdtempSync(join(tmpdir(), "idpo-auth-"));
    const file = join(dir, "tokens");
    writeFileSync(file, "secret\n");
    const s = await start(testService().def, { IDPO_AUTH_TOKENS_FILE: file });
    // gRPC over HTTP/2: the headers of a 60 MiB call whose body never comes get a trailers-only answer.
    const session = http2.connect(s.url);
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": "/idpo.scorer.v1.ScorerService/Score",
        "content-type": "application/grpc",
        te: "trailers",
      });
      const headers = await new Promise<http2.IncomingHttpHeaders>((r) => stream.once("response", r));
      expect(headers["grpc-status"]).toBe(String(Code.Unauthenticated));
      expect(decodeURIComponent(String(headers["grpc-message"]))).toBe(
        "missing authorization header (expected: Bearer <token>)",
      );
      stream.close();
    } finally {
      session.close();
    }
    // Connect unary over HTTP/1.1: a 401 with the Connect error body, the declared body never sent.
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${s.url}/idpo.scorer.v1.ScorerService/Score`, {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": String(60 << 20) },
      });
      req.on("response", (res) => {
        let body = "";
        res.on("data", (d) => {
          body += d;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on("error", reject);
      req.flushHeaders();
    });
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toEqual({
      code: "unauthenticated",
      message: "missing authorization header (expected: Bearer <token>)",
    });
    // What clients of each protocol make of the early answers.
    for (const transport of [
      createGrpcTransport({ baseUrl: s.url }),
      createGrpcWebTransport({ baseUrl: s.url, httpVersion: "1.1" }),
      createConnectTransport({ baseUrl: s.url, httpVersion: "1.1" }),
    ]) {
      await expect(
        createClient(ScorerService, transport).score(
          { prompts: ["x"] },
          { headers: { authorization: "Bearer no" } },
        ),
      ).rejects.toMatchObject({ code: Code.Unauthenticated, rawMessage: "invalid bearer token" });
    }
  });

  it("answers UNAVAILABLE, not INTERNAL, when a handler fails because NATS is away", async () => {
    let fail: Error = new Error("boom");
    const def: ServiceDefinition = {
      ...testService().def,
      create(ctx) {
        ctx.setServing(true);
        return {
          routes: (router) =>
            router.service(ScorerService, {
              score() {
                throw fail;
              },
              evaluate() {
                throw fail;
              },
            }),
        };
      },
    };
    const s = await start(def);
    const client = createClient(ScorerService, createGrpcTransport({ baseUrl: s.url }));
    // What the NATS client throws while its server restarts (nats.js names its errors).
    fail = Object.assign(new Error("timeout"), { name: "TimeoutError" });
    await expect(client.score({ prompts: ["x"] })).rejects.toMatchObject({
      code: Code.Unavailable,
      rawMessage: "a backing service is unavailable: timeout",
    });
    fail = new Error("a bug");
    await expect(client.score({ prompts: ["x"] })).rejects.toMatchObject({ code: Code.Internal });
  });

  it("names the variable of a tokens file or TLS file it cannot use (ConfigError: idpo serve exits 2)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "idpo-config-"));
    await expect(start(testService().def, { IDPO_AUTH_TOKENS_FILE: join(dir, "missing") })).rejects.toSatisfy(
      (e) =>
        e instanceof ConfigError &&
        e.variable === "IDPO_AUTH_TOKENS_FILE" &&
        /missing: ENOENT/.test(e.message),
    );
    const garbage = join(dir, "garbage.pem");
    writeFileSync(garbage, "not a PEM file\n");
    const tls = (cert: string, key: string) =>
      start(testService().def, { IDPO_TLS_CERT_FILE: cert, IDPO_TLS_KEY_FILE: key });
    await expect(tls(join(dir, "no-cert.pem"), garbage)).rejects.toSatisfy(
      (e) =>
        e instanceof ConfigError &&
        e.variable === "IDPO_TLS_CERT_FILE" &&
        /no-cert\.pem: ENOENT/.test(e.message),
    );
    await expect(tls(garbage, garbage)).rejects.toSatisfy(
      (e) =>
        e instanceof ConfigError &&
        e.variable === "IDPO_TLS_KEY_FILE" &&
        e.message.startsWith(`IDPO_TLS_KEY_FILE ${garbage} is not a PEM private key`),
    );
  });

  it("lets an in-flight call finish on shutdown and refuses new calls", async () => {
    const s = await start(testService({ delayMs: 400 }).def);
    const client = createClient(ScorerService, createGrpcTransport({ baseUrl: s.url }));
    const inFlight = client.score({ prompts: ["slow"] });
    await new Promise((r) => setTimeout(r, 100));
    const stopping = s.shutdown();
    await expect(
      createClient(ScorerService, createGrpcTransport({ baseUrl: s.url })).score({ prompts: ["late"] }),
    ).rejects.toBeInstanceOf(ConnectError);
    expect((await inFlight).scores).toHaveLength(1);
    await stopping;
    server = undefined;
  });
});

describe("configuration", () => {
  it("uses defaults when nothing is set", () => {
    const c = loadRuntimeConfig("scorer", 50054, {});
    expect(c).toMatchObject({ host: "0.0.0.0", port: 50054, logLevel: "info", shutdownGraceMs: 10_000 });
    expect(c.maxMessageBytes).toBe(64 * 1024 * 1024);
  });

  it("prefers IDPO_PORT, then IDPO_<SERVICE>_PORT", () => {
    expect(loadRuntimeConfig("scorer", 50054, { IDPO_SCORER_PORT: "6000" }).port).toBe(6000);
    expect(loadRuntimeConfig("scorer", 50054, { IDPO_SCORER_PORT: "6000", IDPO_PORT: "7000" }).port).toBe(
      7000,
    );
  });

  it.each([
    ["IDPO_PORT", "abc", /IDPO_PORT="abc" is not valid: expected an integer in \[0, 65535\]/],
    ["IDPO_PORT", "70000", /IDPO_PORT=70000 is out of range/],
    [
      "IDPO_LOG_LEVEL",
      "loud",
      /IDPO_LOG_LEVEL="loud" is not valid: expected one of debug, info, warn, error/,
    ],
    ["IDPO_MAX_MESSAGE_BYTES", "1.5", /IDPO_MAX_MESSAGE_BYTES/],
    ["OTEL_EXPORTER_OTLP_ENDPOINT", "not a url", /OTEL_EXPORTER_OTLP_ENDPOINT="not a url" is not a URL/],
    ["IDPO_TLS_CERT_FILE", "/tmp/cert.pem", /IDPO_TLS_KEY_FILE is unset/],
  ])("rejects %s=%s with a message naming it", (name, value, message) => {
    let err: unknown;
    try {
      loadRuntimeConfig("scorer", 50054, { [name]: value });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
  });
});
