/**
 * The one way tests get a NATS JetStream server: a container from the `@testcontainers/nats` module where a
 * container runtime answers, else a spawned `nats-server -js` with a temporary store. Both are behind
 * {@link TestNats}, which can crash (kill) and restart the server on the same URL with its store kept.
 * `IDPO_TEST_NATS=container|process` forces a path.
 */
import { existsSync } from "node:fs";
import { freePort, type NatsServerHandle, startNatsServer } from "./nats-server.js";

/** A NATS JetStream server a test owns. */
export interface TestNats {
  /** nats://[user:pass@]host:port (unchanged across restarts). */
  url: string;
  /** How it runs: "container" (testcontainers) or "process" (a spawned nats-server). */
  kind: "container" | "process";
  /** Kill the server at once (SIGKILL), keeping its JetStream store: a crash. */
  kill(): Promise<void>;
  /** Start it again on the same URL and store. */
  restart(): Promise<void>;
  /** Stop it and remove its store. */
  stop(): Promise<void>;
}

/** Options of {@link startTestNats}. */
export interface TestNatsOptions {
  /** Extra nats-server arguments, as name-value pairs (e.g. `["--auth", "token"]`). */
  args?: string[];
  /** Force one path; by default a container when a runtime answers, else a process. */
  kind?: "container" | "process";
}

/** The container image: the nats-server line the Helm chart's NATS runs. */
const NATS_IMAGE = "nats:2.10-alpine";

let runtimeAnswers: Promise<boolean> | undefined;

/** Where a container runtime would listen: DOCKER_HOST, or the Docker and Podman sockets. */
function containerSocketExists(): boolean {
  if (process.env.DOCKER_HOST) return true;
  const uid = process.getuid?.() ?? 0;
  return ["/var/run/docker.sock", `/run/user/${uid}/docker.sock`, `/run/user/${uid}/podman/podman.sock`].some(
    (p) => existsSync(p),
  );
}

/**
 * True when testcontainers finds a container runtime that answers (asked once per process, 10 s at most;
 * without a socket to ask, at once: a Docker client alone is not a runtime).
 */
function containerRuntimeAnswers(): Promise<boolean> {
  runtimeAnswers ??= (async () => {
    if (!containerSocketExists()) return false;
    let timer: NodeJS.Timeout | undefined;
    try {
      const { getContainerRuntimeClient } = await import("testcontainers");
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer")), 10_000);
      });
      await Promise.race([getContainerRuntimeClient(), timeout]);
      return true;
    } catch {
      return false;
    } finally {
      clearTimeout(timer);
    }
  })();
  return runtimeAnswers;
}

/** The path the suite takes: `IDPO_TEST_NATS` when set, else "container" where a runtime answers. */
export async function testNatsKind(): Promise<"container" | "process"> {
  const forced = process.env.IDPO_TEST_NATS;
  if (forced === "process" || forced === "container") return forced;
  return (await containerRuntimeAnswers()) ? "container" : "process";
}

/**
 * Start a NATS JetStream server for a test (see {@link TestNats}). A token (`--auth`) always runs as a
 * process: the testcontainers NATS module always sets user/password authentication, which NATS does not
 * combine with a token.
 */
export async function startTestNats(opts: TestNatsOptions = {}): Promise<TestNats> {
  const kind = opts.args?.includes("--auth") ? "process" : (opts.kind ?? (await testNatsKind()));
  return kind === "container"
    ? startContainer(opts)
    : fromProcess(await startNatsServer({ args: opts.args }));
}

function fromProcess(h: NatsServerHandle): TestNats {
  return { url: h.url, kind: "process", kill: h.kill, restart: h.restart, stop: h.stop };
}

async function startContainer(opts: TestNatsOptions): Promise<TestNats> {
  const { NatsContainer } = await import("@testcontainers/nats");
  // A fixed host port keeps the URL across restarts (a restarted container would get another random one).
  const port = await freePort();
  const container = new NatsContainer(NATS_IMAGE)
    .withJetStream()
    .withArg("store_dir", "/data/jetstream")
    .withExposedPorts({ container: 4222, host: port });
  const args = opts.args ?? [];
  for (let i = 0; i + 1 < args.length; i += 2) container.withArg(args[i], args[i + 1]);
  const started = await container.start();
  const auth = `${encodeURIComponent(started.username ?? "")}:${encodeURIComponent(started.password ?? "")}@`;
  let down = false;
  return {
    url: `nats://${started.username ? auth : ""}${started.getHost()}:${port}`,
    kind: "container",
    async kill() {
      // No grace: docker kills nats-server (SIGKILL); the stopped container keeps its filesystem and store.
      await started.stop({ timeout: 0, remove: false });
      down = true;
    },
    async restart() {
      await started.restart({ timeout: 0 });
      down = false;
    },
    async stop() {
      if (down) await started.restart({ timeout: 0 }).catch(() => undefined);
      await started.stop({ timeout: 0, remove: true, removeVolumes: true });
      down = false;
    },
  };
}
