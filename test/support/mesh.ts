/**
 * The mesh as separate processes for end-to-end tests: one `node cli/bin/idpo.js serve <service>` child per
 * service (and the inference sidecar) on free loopback ports, sharing one NATS JetStream server under a bus
 * prefix of their own.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createClient } from "@connectrpc/connect";
import { SERVICE_NAMES, type ServiceName } from "@idpo/local-mesh";
import { ControllerService } from "@idpo/proto";
import { createPeerTransport } from "@idpo/runtime";
import { freePort } from "./nats-server.js";

/**
 * The five services and one inference sidecar, in start order (dependencies first): the services `idpo serve`
 * starts. The sidecar serves the generator and the improver that run with IDPO_INFERENCE=sidecar (one process
 * for both: its cache holds a policy and an improver side by side).
 */
export const MESH_SERVICES = SERVICE_NAMES;
export type MeshServiceName = ServiceName;

const ROOT = resolve(import.meta.dirname, "../..");
const CLI = join(ROOT, "cli/bin/idpo.js");

/** Options of {@link startMeshProcesses}. */
export interface MeshProcessOptions {
  /** NATS server URL (the suite's, from `inject("natsUrl")`). */
  natsUrl: string;
  /** Bus name prefix isolating this mesh's streams, buckets and subjects. */
  busPrefix: string;
  /** Extra environment for every service (e.g. shorter controller timings). */
  env?: Record<string, string>;
  /** Extra environment per service. */
  serviceEnv?: Partial<Record<MeshServiceName, Record<string, string>>>;
}

interface Child {
  proc: ChildProcess;
  exited: Promise<number | null>;
  log: WriteStream;
}

/** A running mesh of service processes. */
export class MeshProcesses {
  /** Temporary directory: each service's IDPO_DATA_DIR and its log file. */
  readonly dir = mkdtempSync(join(tmpdir(), "idpo-mesh-"));
  readonly ports = {} as Record<MeshServiceName, number>;
  private readonly children = new Map<MeshServiceName, Child>();
  private readonly onExit = () => {
    for (const [svc, c] of this.children) if (this.running(svc)) c.proc.kill("SIGKILL");
  };

  constructor(readonly opts: MeshProcessOptions) {
    process.on("exit", this.onExit);
  }

  /** http://127.0.0.1:<port> of a service. */
  url(svc: MeshServiceName): string {
    return `http://127.0.0.1:${this.ports[svc]}`;
  }

  /** The log file of a service (its stderr and stdout, across restarts). */
  logPath(svc: MeshServiceName): string {
    return join(this.dir, `${svc}.log`);
  }

  /** The last `chars` characters of a service's log (for failure messages). */
  logTail(svc: MeshServiceName, chars = 4000): string {
    try {
      return readFileSync(this.logPath(svc), "utf8").slice(-chars);
    } catch {
      return "";
    }
  }

  /** A Controller client on its real gRPC port. */
  controller() {
    return createClient(ControllerService, createPeerTransport(this.url("controller")));
  }

  private env(svc: MeshServiceName): Record<string, string> {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) {
      // The child's configuration is exactly what this mesh says: no stray IDPO_* from the test's shell.
      if (v !== undefined && !k.startsWith("IDPO_")) env[k] = v;
    }
    const dataDir = join(this.dir, "data", svc);
    mkdirSync(dataDir, { recursive: true });
    Object.assign(env, {
      IDPO_NATS_URL: this.opts.natsUrl,
      IDPO_BUS_PREFIX: this.opts.busPrefix,
      IDPO_DATA_DIR: dataDir,
      IDPO_HOST: "127.0.0.1",
      IDPO_LOG_LEVEL: "info",
      IDPO_SHUTDOWN_GRACE_MS: "2000",
    });
    for (const s of MESH_SERVICES) env[`IDPO_${s.toUpperCase()}_ADDR`] = this.url(s);
    Object.assign(env, this.opts.env ?? {}, this.opts.serviceEnv?.[svc] ?? {});
    return env;
  }

  /** Starts (or restarts) one service and waits until it listens. */
  async start(svc: MeshServiceName, timeoutMs = 90_000): Promise<void> {
    if (this.running(svc)) throw new Error(`${svc} is already running`);
    const log = createWriteStream(this.logPath(svc), { flags: "a" });
    const proc = spawn(process.execPath, [CLI, "serve", svc, "--port", String(this.ports[svc])], {
      cwd: ROOT,
      env: this.env(svc),
      stdio: ["ignore", "pipe", "pipe"],
    });
    proc.stdout?.pipe(log, { end: false });
    proc.stderr?.pipe(log, { end: false });
    const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
    this.children.set(svc, { proc, exited, log });
    const listening = new Promise<void>((resolveListening, reject) => {
      let out = "";
      proc.stdout?.on("data", (d) => {
        out += String(d);
        if (out.includes("listening on")) resolveListening();
      });
      void exited.then((code) =>
        reject(new Error(`${svc} exited with ${code} before listening:\n${this.logTail(svc)}`)),
      );
    });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${svc} did not listen within ${timeoutMs} ms:\n${this.logTail(svc)}`)),
        timeoutMs,
      );
    });
    try {
      await Promise.race([listening, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** True while the service's process has not exited. */
  running(svc: MeshServiceName): boolean {
    const p = this.children.get(svc)?.proc;
    return p !== undefined && p.exitCode === null && p.signalCode === null;
  }

  /** Kills one service with `signal` (SIGKILL: a crash) and waits for it to exit. */
  async kill(svc: MeshServiceName, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const c = this.children.get(svc);
    if (!c || !this.running(svc)) return;
    c.proc.kill(signal);
    await c.exited;
  }

  /** Stops every service (SIGTERM, then SIGKILL after `graceMs`), dependents first. */
  async stop(graceMs = 10_000): Promise<void> {
    for (const svc of [...MESH_SERVICES].reverse()) {
      const c = this.children.get(svc);
      if (!c) continue;
      if (this.running(svc)) {
        c.proc.kill("SIGTERM");
        const timer = setTimeout(() => c.proc.kill("SIGKILL"), graceMs);
        await c.exited;
        clearTimeout(timer);
      }
      c.log.end();
    }
    process.off("exit", this.onExit);
  }

  /** Stops the mesh and removes its directory (keep it with `keep` to read the logs). */
  async close(keep = false): Promise<void> {
    await this.stop();
    if (!keep) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Picks free ports and starts every service as its own process, in dependency order. */
export async function startMeshProcesses(opts: MeshProcessOptions): Promise<MeshProcesses> {
  const mesh = new MeshProcesses(opts);
  for (const svc of MESH_SERVICES) mesh.ports[svc] = await freePort();
  try {
    // The services only reach each other once a run starts, so they can boot side by side.
    await Promise.all(MESH_SERVICES.map((svc) => mesh.start(svc)));
  } catch (err) {
    await mesh.close(true);
    throw err;
  }
  return mesh;
}
