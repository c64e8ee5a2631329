/**
 * `npm run bench:load`: a bounded load test of the Improver as its own process (`idpo serve improver`, a
 * tiny improvement model on the embedded bus). Two phases of `--callers` concurrent callers, each making
 * `--calls` ImproveImages calls of one 16×16 PNG in turn; in the second phase one more caller sends a
 * decompression bomb (a ~200 KB PNG declaring 8192×8192) at the start. Health is checked every 100 ms
 * throughout. Per phase: p50/p99 latency of the admitted calls, RESOURCE_EXHAUSTED count, the slowest
 * health answer and whether every one was SERVING, and the server's RSS before and after.
 *
 * Options: --callers 64 --calls 4 --steps 4 --max-queue 32 (IDPO_IMPROVER_MAX_QUEUE of the server)
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { type AddressInfo, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { create } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { openBus } from "@idpo/bus";
import { encodePng } from "@idpo/data";
import { blackPngBomb } from "@idpo/data/test-fixtures";
import {
  createModel,
  encodeCheckpoint,
  improverFromPolicy,
  initBackend,
  preset,
  readCheckpointMetadata,
} from "@idpo/diffusion";
import { CheckpointStore } from "@idpo/mesh";
import {
  Health,
  ImageSchema,
  ImproverService,
  ModelKind,
  HealthCheckResponse_ServingStatus as Serving,
} from "@idpo/proto";
import { createPeerTransport } from "@idpo/runtime";

const { values } = parseArgs({
  options: {
    callers: { type: "string", default: "64" },
    calls: { type: "string", default: "4" },
    steps: { type: "string", default: "4" },
    "max-queue": { type: "string", default: "32" },
  },
});
function positiveInt(name: keyof typeof values): number {
  const v = Number(values[name]);
  if (!Number.isInteger(v) || v < 1)
    throw new Error(`--${name} must be a positive integer, got ${values[name]}`);
  return v;
}
const CALLERS = positiveInt("callers");
const CALLS = positiveInt("calls");
const STEPS = positiveInt("steps");
const MAX_QUEUE = positiveInt("max-queue");
const ROOT = resolve(import.meta.dirname, "..");
const CHECKPOINT = "bench/load-improver";

/** A port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolvePort(port));
    });
  });
}

/** Resident set size of a process, MiB (Linux /proc). */
function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** Stores a tiny improvement model as CHECKPOINT in the embedded bus under `dataDir`. */
async function storeImprover(dataDir: string): Promise<void> {
  await initBackend({ backend: "cpu", log: () => {} });
  const bus = await openBus({ backend: "embedded", dataDir });
  const policy = createModel(preset("tiny"), 1, { trainable: false });
  const improver = improverFromPolicy(policy, { trainable: false });
  const bytes = encodeCheckpoint(improver, { step: 0 });
  const sha256 = readCheckpointMetadata(bytes).contentHash.replace(/^sha256:/, "");
  await new CheckpointStore(bus.artifacts).put(
    { id: CHECKPOINT, kind: ModelKind.IMPROVER, step: 0, sha256 },
    bytes,
  );
  policy.dispose();
  improver.dispose();
  await bus.close();
}

async function startImprover(dataDir: string, port: number): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [join(ROOT, "cli/bin/idpo.js"), "serve", "improver", "--port", String(port)],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        IDPO_DATA_DIR: dataDir,
        IDPO_NATS_URL: "",
        IDPO_HOST: "127.0.0.1",
        IDPO_IMPROVER_CHECKPOINT: CHECKPOINT,
        IDPO_IMPROVER_MAX_QUEUE: String(MAX_QUEUE),
        IDPO_LOG_LEVEL: "warn",
      },
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
  const health = createClient(Health, createPeerTransport(`http://127.0.0.1:${port}`));
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the improver exited with ${child.exitCode}`);
    try {
      if ((await health.check({}, { timeoutMs: 1000 })).status === Serving.SERVING) return child;
    } catch {
      // Not listening yet.
    }
    if (Date.now() > deadline) throw new Error("the improver did not become SERVING within 120 s");
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** What one phase measured. */
interface PhaseResult {
  phase: string;
  admitted: number;
  resourceExhausted: number;
  otherErrors: string[];
  p50Ms: number;
  p99Ms: number;
  wallS: number;
  healthChecks: number;
  healthAllServing: boolean;
  healthMaxMs: number;
  rssBeforeMiB: number;
  rssAfterMiB: number;
  bomb?: string;
}

async function phase(name: string, url: string, pid: number, bomb?: Uint8Array): Promise<PhaseResult> {
  const transport = createPeerTransport(url);
  const client = createClient(ImproverService, transport);
  const health = createClient(Health, transport);
  const png = encodePng({ height: 16, width: 16, data: new Float32Array(16 * 16 * 3).fill(0.25) });
  const rssBefore = rssMiB(pid);
  const calls: CallTally = { latencies: [], exhausted: 0, other: [] };
  const prober = probeHealth(health);
  const started = performance.now();
  const callers = Array.from({ length: CALLERS }, (_, c) => caller(client, png, c, calls));
  const bombOutcome = bomb ? bombCall(client, bomb) : undefined;
  await Promise.all(bombOutcome ? [...callers, bombOutcome] : callers);
  const wallS = (performance.now() - started) / 1000;
  const checks = await prober.stop();
  const latencies = calls.latencies.sort((a, b) => a - b);
  return {
    phase: name,
    admitted: latencies.length,
    resourceExhausted: calls.exhausted,
    otherErrors: [...new Set(calls.other)],
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    wallS,
    healthChecks: checks.checks,
    healthAllServing: checks.allServing,
    healthMaxMs: checks.maxMs,
    rssBeforeMiB: rssBefore,
    rssAfterMiB: rssMiB(pid),
    bomb: bombOutcome ? await bombOutcome : undefined,
  };
}

/** An ImproveImages request for one PNG. */
function improveRequest(bytes: Uint8Array, seed: number) {
  return {
    images: [create(ImageSchema, { data: { case: "png", value: bytes } })],
    prompts: ["a small red circle on a black background"],
    steps: STEPS,
    seed: BigInt(seed),
  };
}

/** The admitted calls' latencies and the refused calls of a phase. */
interface CallTally {
  latencies: number[];
  exhausted: number;
  other: string[];
}

/** Caller `c`: CALLS calls in turn, each tallied. */
async function caller(
  client: Client<typeof ImproverService>,
  png: Uint8Array,
  c: number,
  tally: CallTally,
): Promise<void> {
  for (let i = 0; i < CALLS; i++) {
    const t = performance.now();
    try {
      await client.improveImages(improveRequest(png, c * CALLS + i), { timeoutMs: 300_000 });
      tally.latencies.push(performance.now() - t);
    } catch (err) {
      const e = ConnectError.from(err);
      if (e.code === Code.ResourceExhausted) tally.exhausted++;
      else tally.other.push(`${Code[e.code]}: ${e.rawMessage}`);
    }
  }
}

/** What became of the decompression bomb's call. */
async function bombCall(client: Client<typeof ImproverService>, bomb: Uint8Array): Promise<string> {
  const t = performance.now();
  try {
    await client.improveImages(improveRequest(bomb, 0));
    return "accepted (!)";
  } catch (err) {
    const e = ConnectError.from(err);
    return `${Code[e.code]} in ${(performance.now() - t).toFixed(0)} ms: ${e.rawMessage}`;
  }
}

/** Health checks every 100 ms until stop(), which resolves once the check under way has finished. */
function probeHealth(health: Client<typeof Health>): {
  stop: () => Promise<{ checks: number; allServing: boolean; maxMs: number }>;
} {
  const tally = { checks: 0, allServing: true, maxMs: 0 };
  let running = true;
  const prober = (async () => {
    while (running) {
      const t = performance.now();
      try {
        const res = await health.check({}, { timeoutMs: 30_000 });
        if (res.status !== Serving.SERVING) tally.allServing = false;
      } catch {
        tally.allServing = false;
      }
      tally.maxMs = Math.max(tally.maxMs, performance.now() - t);
      tally.checks++;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await prober;
      return tally;
    },
  };
}

const dataDir = mkdtempSync(join(tmpdir(), "idpo-bench-load-"));
let child: ChildProcess | undefined;
try {
  await storeImprover(dataDir);
  const port = await freePort();
  child = await startImprover(dataDir, port);
  const url = `http://127.0.0.1:${port}`;
  const bomb = await blackPngBomb(8192);
  console.log(
    `improver load: ${CALLERS} callers × ${CALLS} calls, 1 image of 16×16, ${STEPS} steps, max queue ${MAX_QUEUE}; bomb ${(bomb.length / 1024).toFixed(0)} KB declaring 8192×8192`,
  );
  const rows = [await phase("plain", url, child.pid!), await phase("with a bomb", url, child.pid!, bomb)];
  for (const r of rows) {
    console.log(
      `${r.phase.padEnd(12)} admitted ${r.admitted}, RESOURCE_EXHAUSTED ${r.resourceExhausted}, p50 ${r.p50Ms.toFixed(0)} ms, p99 ${r.p99Ms.toFixed(0)} ms, wall ${r.wallS.toFixed(1)} s; health ${r.healthChecks} checks, ${r.healthAllServing ? "all SERVING" : "NOT always SERVING"}, slowest ${r.healthMaxMs.toFixed(0)} ms; RSS ${r.rssBeforeMiB.toFixed(0)} → ${r.rssAfterMiB.toFixed(0)} MiB${r.bomb ? `; bomb: ${r.bomb}` : ""}${r.otherErrors.length ? `; other errors: ${r.otherErrors.join(" | ")}` : ""}`,
    );
  }
} finally {
  child?.kill("SIGTERM");
  rmSync(dataDir, { recursive: true, force: true });
}
