/**
 * The one way tests get a NATS JetStream server: a container from the `@testcontainers/nats` module where a
 * container runtime answers, else a spawned `nats-server -js` with a temporary store. Both are behind
 * {@link TestNats}, which can crash (kill) and restart the server on the same URL with its store kept.
 */
import { type NatsServerHandle, startNatsServer } from "./nats-server.js";

/** A NATS JetStream server a test owns. */
export interface TestNats {
  /** nats://host:port (unchanged across restarts). */
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
  /** Extra nats-server arguments (e.g. `["--auth", "token"]`). */
  args?: string[];
  /** Force one path; by default a container when a runtime answers, else a process. */
  kind?: "container" | "process";
}

/** The container image; nats-server 2.10 is the line the Helm chart's NATS runs. */
const NATS_IMAGE = "nats:2.10-alpine";

/** The part of `@testcontainers/nats` used here (imported at run time: it is only needed with a runtime). */
interface NatsContainerModule {
  NatsContainer: new (
    image: string,
  ) => {
    withJetStream(): unknown;
    withArg(name: string, value: string): unknown;
    withExposedPorts(...ports: { container: number; host: number }[]): unknown;
    withTmpFs(tmpfs: Record<string, string>): unknown;
    withCommand(cmd: string[]): unknown;
    start(): Promise<{
      getHost(): string;
      getMappedPort(port: number): number;
      restart(opts?: { timeout?: number }): Promise<void>;
      stop(opts?: { timeout?: number; remove?: boolean; removeVolumes?: boolean }): Promise<unknown>;
    }>;
  };
}

interface TestcontainersModule {
  getContainerRuntimeClient(): Promise<unknown>;
}

let runtimeAnswers: Promise<boolean> | undefined;

/** True when testcontainers finds a container runtime that answers (asked once per process, 10 s at most). */
async function containerRuntimeAnswers(): Promise<boolean> {
  runtimeAnswers ??= (async () => {
    try {
      // A variable specifier: the module is optional at type-check time and absent from lean installs.
      const name = "testcontainers";
      const tc = (await import(/* @vite-ignore */ name)) as TestcontainersModule;
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no answer")), 10_000);
      });
      try {
        await Promise.race([tc.getContainerRuntimeClient(), timeout]);
      } finally {
        clearTimeout(timer);
      }
      return true;
    } catch {
      return false;
    }
  })();
  return runtimeAnswers;
}

/** The path the suite takes (for its log line and the README): "container" or "process". */
export async function testNatsKind(): Promise<"container" | "process"> {
  if (process.env.IDPO_TEST_NATS === "process" || process.env.IDPO_TEST_NATS === "container") {
    return process.env.IDPO_TEST_NATS;
  }
  return (await containerRuntimeAnswers()) ? "container" : "process";
}

/** Start a NATS JetStream server for a test (see {@link TestNats}); `IDPO_TEST_NATS` forces a path. */
export async function startTestNats(opts: TestNatsOptions = {}): Promise<TestNats> {
  const kind = opts.kind ?? (await testNatsKind());
  return kind === "container"
    ? startContainer(opts)
    : fromProcess(await startNatsServer({ args: opts.args }));
}

function fromProcess(h: NatsServerHandle): TestNats {
  return { url: h.url, kind: "process", kill: h.kill, restart: h.restart, stop: h.stop };
}

async function startContainer(opts: TestNatsOptions): Promise<TestNats> {
  const name = "@testcontainers/nats";
  const { NatsContainer } = (await import(/* @vite-ignore */ name)) as NatsContainerModule;
  // A fixed host port keeps the URL across restarts (a restarted container would get a new random one).
  const { freePort } = await import("./nats-server.js");
  const port = await freePort();
  const container = new NatsContainer(NATS_IMAGE);
  container.withJetStream();
  container.withExposedPorts({ container: 4222, host: port });
  for (let i = 0; i + 1 < (opts.args ?? []).length; i += 2) {
    container.withArg(opts.args![i].replace(/^-+/, ""), opts.args![i + 1]);
  }
  // The store lives in the container's filesystem, which a restart of the same container keeps.
  container.withArg("store_dir", "/data/jetstream");
  const started = await container.start();
  const url = `nats://${started.getHost()}:${started.getMappedPort(4222)}`;
  let down = false;
  return {
    url,
    kind: "container",
    async kill() {
      // A stop with no grace is a SIGKILL of nats-server; the stopped container keeps its filesystem.
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
