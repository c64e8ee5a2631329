// A client that is not ours: @grpc/grpc-js with @grpc/proto-loader reading the .proto sources.
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { encodePng, parseShapesPrompt, renderIdeal } from "@idpo/data";
import { oracleReward } from "@idpo/metrics";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "./support/nats-server.js";
import { type Spawned, spawnProcess } from "./support/process.js";

const root = join(import.meta.dirname, "..");
const protoDir = join(root, "proto");

function loadService(file: string, pkg: string[], name: string) {
  const def = protoLoader.loadSync(join(protoDir, file), {
    includeDirs: [protoDir],
    keepCase: false,
    longs: Number,
    enums: String,
  });
  let obj = grpc.loadPackageDefinition(def) as Record<string, unknown>;
  for (const p of pkg) obj = obj[p] as Record<string, unknown>;
  return obj[name] as grpc.ServiceClientConstructor;
}

function call<T>(client: grpc.Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    (
      client as unknown as Record<
        string,
        (r: unknown, cb: (e: grpc.ServiceError | null, r: T) => void) => void
      >
    )[method](req, (err: grpc.ServiceError | null, res: T) => (err ? reject(err) : resolve(res)));
  });
}

describe("interop: plain @grpc/grpc-js client against `idpo serve scorer`", () => {
  let proc: Spawned;
  let addr: string;

  beforeAll(async () => {
    const port = await freePort();
    addr = `127.0.0.1:${port}`;
    proc = spawnProcess(
      process.execPath,
      [join(root, "cli/bin/idpo.js"), "serve", "scorer", "--port", String(port)],
      {
        IDPO_DATA_DIR: join(root, "node_modules/.cache/idpo-interop"),
      },
    );
    await proc.waitFor(/scorer listening on/, 60_000);
  });

  afterAll(async () => {
    proc.child.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
  });

  it("answers grpc.health.v1.Health/Check with SERVING", async () => {
    const Health = loadService("grpc/health/v1/health.proto", ["grpc", "health", "v1"], "Health");
    const client = new Health(addr, grpc.credentials.createInsecure());
    const res = await call<{ status: string }>(client, "check", { service: "" });
    expect(res.status).toBe("SERVING");
    const named = await call<{ status: string }>(client, "check", {
      service: "idpo.scorer.v1.ScorerService",
    });
    expect(named.status).toBe("SERVING");
    client.close();
  });

  it("returns the same rewards as the library and INVALID_ARGUMENT naming a bad item", async () => {
    const Scorer = loadService(
      "idpo/scorer/v1/scorer_service.proto",
      ["idpo", "scorer", "v1"],
      "ScorerService",
    );
    const client = new Scorer(addr, grpc.credentials.createInsecure());
    const prompts = [
      "a small red circle on a black background",
      "a large cyan triangle on a navy background",
    ];
    const images = prompts.map((p) => renderIdeal(parseShapesPrompt(p), 16));
    const res = await call<{ scores: Array<{ reward: number; components: Record<string, number> }> }>(
      client,
      "score",
      { images: images.map((img) => ({ png: encodePng(img) })), prompts },
    );
    expect(res.scores).toHaveLength(2);
    for (let i = 0; i < 2; i++) {
      // PNG quantises to 8 bits: score the same quantised pixels with the library.
      const quantised = { ...images[i], data: images[i].data.map((v) => Math.round(v * 255) / 255) };
      const lib = oracleReward(quantised, prompts[i]);
      expect(res.scores[i].reward).toBeCloseTo(lib.reward, 6);
      expect(res.scores[i].components.shape).toBeCloseTo(lib.shape, 6);
    }
    const err = await call(client, "score", {
      images: [{ png: encodePng(images[0]) }, { png: Buffer.from("not a png") }],
      prompts,
    }).catch((e: grpc.ServiceError) => e);
    expect((err as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    // connect-es percent-encodes grpc-message with encodeURIComponent; grpc-js decodes it with decodeURI,
    // which leaves reserved characters such as ":" escaped.
    expect(decodeURIComponent((err as grpc.ServiceError).details)).toMatch(/images\[1\]: undecodable PNG/);
    client.close();
  });
});

describe("graceful shutdown of a service process", () => {
  it("finishes the in-flight call, refuses new ones and exits 0 on SIGTERM", async () => {
    const port = await freePort();
    const proc = spawnProcess(
      process.execPath,
      ["--import", "tsx", join(root, "test/fixtures/slow-scorer.ts")],
      { IDPO_PORT: String(port), IDPO_HOST: "127.0.0.1", SLOW_MS: "1500", IDPO_LOG_LEVEL: "info" },
    );
    await proc.waitFor(/READY \d+/, 60_000);
    const Scorer = loadService(
      "idpo/scorer/v1/scorer_service.proto",
      ["idpo", "scorer", "v1"],
      "ScorerService",
    );
    const a = new Scorer(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const inFlight = call<{ scores: unknown[] }>(a, "score", { prompts: ["x"] });
    // SIGTERM only once the server is inside the call (connecting can take a while on a loaded machine).
    await proc.waitFor(/SCORE STARTED/, 30_000);
    proc.child.kill("SIGTERM");
    await proc.waitFor(/"msg":"shutting down"/, 30_000);
    const b = new Scorer(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
    const refused = await call(b, "score", { prompts: ["late"] }).then(
      () => "accepted",
      (e: grpc.ServiceError) => e.code,
    );
    expect(refused).toBe(grpc.status.UNAVAILABLE);
    expect((await inFlight).scores).toHaveLength(1);
    expect(await proc.exited).toBe(0);
    a.close();
    b.close();
  });
});
