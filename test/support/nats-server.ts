import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A `nats-server -js` child process owned by a test, restartable on the same port and store. */
export interface NatsServerHandle {
  /** nats://127.0.0.1:<port> */
  url: string;
  port: number;
  /** JetStream store directory (kept across restarts, removed by `stop`). */
  storeDir: string;
  /** Kill the server (SIGKILL) without removing its store, to simulate a crash. */
  kill(): Promise<void>;
  /** Suspend the server (SIGSTOP): it holds its connections but reads nothing, as a server in its last
   * moments before a crash. `kill` still works; `restart` starts a new one. */
  freeze(): void;
  /** Start it again on the same port and store. */
  restart(): Promise<void>;
  /** Stop the server and remove its store. */
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      if (addr === null || typeof addr === "string") return reject(new Error("no port"));
      const port = addr.port;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const sock = createConnection({ host: "127.0.0.1", port }, () => {
        sock.end();
        resolve(true);
      });
      sock.on("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nats-server did not open port ${port} within ${timeoutMs} ms`);
}

/** The nats-server binary: `NATS_SERVER_BIN`, else the first found on PATH or in the sbin/bin directories
 * Debian installs it to (/usr/sbin is not on every user's PATH). */
export function natsServerBin(): string {
  const given = process.env.NATS_SERVER_BIN;
  if (given) return given;
  const dirs = [...(process.env.PATH ?? "").split(":"), "/usr/sbin", "/usr/local/bin", "/usr/bin"];
  for (const d of dirs) {
    if (d && existsSync(join(d, "nats-server"))) return join(d, "nats-server");
  }
  return "nats-server";
}

/** Options of {@link startNatsServer}. */
export interface NatsServerOptions {
  /** Extra command-line arguments, e.g. `["--auth", "s3cret"]` or `["--user", "u", "--pass", "p"]`. */
  args?: string[];
}

/** Spawn `nats-server -js` on a free loopback port with a temporary store. */
export async function startNatsServer(opts: NatsServerOptions = {}): Promise<NatsServerHandle> {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), "idpo-nats-"));
  let child: ChildProcess | undefined;
  const launch = async () => {
    const args = ["-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir, ...(opts.args ?? [])];
    child = spawn(natsServerBin(), args, {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr?.on("data", (d) => {
      // Keep the tail only: it is for the error message if the server exits.
      stderr = (stderr + String(d)).slice(-16_384);
    });
    const failed = new Promise<never>((_, reject) => {
      child?.once("error", (err) =>
        reject(
          new Error(
            `cannot start nats-server (is it installed? apt-get install -y nats-server): ${err.message}`,
          ),
        ),
      );
      child?.once("exit", (code) => reject(new Error(`nats-server exited with ${code}: ${stderr}`)));
    });
    // JetStream recovers its store before it listens: on a loaded machine that takes seconds.
    await Promise.race([waitForPort(port, 60_000), failed]);
    child.removeAllListeners("exit");
  };
  const kill = async () => {
    const c = child;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGKILL");
    });
  };
  // A test process that exits without calling stop() must not leave its server running.
  const onExit = () => {
    if (child && child.exitCode === null) child.kill("SIGKILL");
  };
  process.on("exit", onExit);
  await launch().catch((err) => {
    process.off("exit", onExit);
    rmSync(storeDir, { recursive: true, force: true });
    throw err;
  });
  return {
    url: `nats://127.0.0.1:${port}`,
    port,
    storeDir,
    kill,
    freeze: () => {
      if (child && child.exitCode === null) child.kill("SIGSTOP");
    },
    restart: launch,
    stop: async () => {
      process.off("exit", onExit);
      await kill();
      rmSync(storeDir, { recursive: true, force: true });
    },
  };
}
