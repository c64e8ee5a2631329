import { create } from "@bufbuild/protobuf";
import { createClient, createRouterTransport } from "@connectrpc/connect";
import type { Bus, StateStore, Subscription } from "@idpo/bus";
import { ControllerService, RunConfigSchema, RunStage, RunState, runStateEnded } from "@idpo/proto";
import { createLogger, type Logger } from "@idpo/runtime";
import { afterEach, describe, expect, it } from "vitest";
import { controllerRoutes } from "./controller-routes.js";
import { DEFAULT_CONTROLLER_OPTIONS, type DriverDeps } from "./driver-deps.js";
import { FakeMesh, quietLogger } from "./fake-mesh-fixture.js";
import { RunManager } from "./run-manager.js";
import { jobIds } from "./run-plan.js";
import { RunStore } from "./run-store.js";
import { subscribeShardEvents } from "./shard-events.js";

const LEASE_MS = 600;

const CONFIG = create(RunConfigSchema, {
  dataset: "shapes://?pairs=64&size=16&seed=1",
  modelPreset: "tiny",
  baseTraining: { steps: 3 },
  improverTraining: { steps: 3 },
  policyTraining: { steps: 40 },
  iterations: 2,
  pairsPerIteration: 6,
  shardSize: 4,
  evalPrompts: ["a small red circle on a black background"],
  evalSamplesPerPrompt: 2,
  seed: 7n,
});

/** A bus whose state store fails every call once `dead` is set: a controller cut off for good (a dead one). */
function killableBus(bus: Bus): { bus: Bus; kill(): void } {
  let dead = false;
  const state = new Proxy(bus.state, {
    get(target, prop) {
      const v = Reflect.get(target, prop, target);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        if (dead) return Promise.reject(new Error("connection closed"));
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as StateStore;
  const wrapped = new Proxy(bus, {
    get: (target, prop) => (prop === "state" ? state : Reflect.get(target, prop, target)),
  });
  return {
    bus: wrapped,
    kill: () => {
      dead = true;
    },
  };
}

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 20_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("RunManager leases", () => {
  let mesh: FakeMesh | undefined;
  const managers: RunManager[] = [];
  const subs: Subscription[] = [];
  afterEach(async () => {
    for (const m of managers.splice(0)) await m.close(2000);
    for (const s of subs.splice(0)) await s.stop();
    await mesh?.close();
    mesh = undefined;
  });

  function deps(bus: Bus, logger: Logger = quietLogger): DriverDeps {
    const m = mesh!;
    return {
      store: new RunStore(bus.state),
      bus,
      peers: m.peers,
      checkpoints: m.checkpoints,
      logger,
      options: {
        ...DEFAULT_CONTROLLER_OPTIONS,
        progressIntervalMs: 50,
        loadWaitMs: 20,
        jobPollMs: 10,
        peerRetryMs: 5_000,
        leaseMs: LEASE_MS,
      },
    };
  }

  it("of two controllers told about one run, one drives it; the other takes it over once the first is dead", async () => {
    // 20 ms a training step: the second controller takes over with an iteration still to train (at 5 ms a
    // fast machine had the run in its last evaluation by then, driven to its end within one poll).
    mesh = await new FakeMesh().start({ stepMs: 20 });
    const store = new RunStore(mesh.bus.state);
    subs.push(...(await subscribeShardEvents(mesh.bus, store, quietLogger)));
    const first = killableBus(mesh.bus);
    const a = new RunManager(deps(first.bus), "controller-a");
    // The second controller's own record of the takeover, which outlasts its driving of the run.
    const bLog: string[] = [];
    const bLogger = createLogger("info", {}, (line) => bLog.push(line));
    const b = new RunManager(deps(mesh.bus, bLogger), "controller-b");
    managers.push(a, b);
    const routes = controllerRoutes({
      ...deps(first.bus),
      manager: a,
      shutdownSignal: new AbortController().signal,
    });
    const client = createClient(ControllerService, createRouterTransport(routes));
    await client.createRun({ runId: "leased", config: CONFIG });
    b.drive("leased");
    await until("iteration 1's training", async () => {
      const r = (await store.get("leased"))!.run;
      return r.stage === RunStage.TRAIN && r.iteration === 1;
    });
    // Several lease periods with both managers on the run: only the holder drives it.
    const watchUntil = Date.now() + 3 * LEASE_MS;
    while (Date.now() < watchUntil) {
      expect([a.isDriving("leased"), b.isDriving("leased")]).toEqual([true, false]);
      await new Promise((r) => setTimeout(r, 20));
    }
    first.kill();
    await until(
      "the second controller to take the run over",
      () => bLog.some((l) => l.includes("took over the run's lease")),
      10 * LEASE_MS,
    );
    await until("the run's end", async () => runStateEnded((await store.get("leased"))!.run.state));
    const last = (await store.get("leased"))!.run;
    expect(last.state, last.error).toBe(RunState.SUCCEEDED);
    expect(last.iterations.map((it) => it.index)).toEqual([1, 2]);
    expect(a.isDriving("leased")).toBe(false);
    expect([...mesh.trainer.jobs.keys()].sort()).toEqual(
      [
        jobIds.base("leased"),
        jobIds.improver("leased"),
        jobIds.iteration("leased", 1),
        jobIds.iteration("leased", 2),
      ].sort(),
    );
    // The run ended: its driver gave the lease up.
    expect(await mesh.bus.state.get("leases.controller.leased")).toBeUndefined();
  }, 60_000);

  it("a controller shutting down gives its leases up: another takes its runs over without waiting for expiry", async () => {
    mesh = await new FakeMesh().start({ stepMs: 5 });
    const store = new RunStore(mesh.bus.state);
    subs.push(...(await subscribeShardEvents(mesh.bus, store, quietLogger)));
    const long = { ...deps(mesh.bus), options: { ...deps(mesh.bus).options, leaseMs: 60_000 } };
    const a = new RunManager(long, "controller-a");
    const b = new RunManager({ ...long, options: { ...long.options, leaseMs: 1500 } }, "controller-b");
    managers.push(a, b);
    const routes = controllerRoutes({ ...long, manager: a, shutdownSignal: new AbortController().signal });
    await createClient(ControllerService, createRouterTransport(routes)).createRun({
      runId: "handover",
      config: CONFIG,
    });
    b.drive("handover");
    await until("the first controller to drive", () => a.isDriving("handover"));
    await new Promise((r) => setTimeout(r, 600));
    expect(b.isDriving("handover")).toBe(false);
    const closedAt = Date.now();
    await a.close();
    await until("the second controller to take the run over", () => b.isDriving("handover"), 5_000);
    // Well inside the holder's 60 s TTL: the lease was released, not left to expire.
    expect(Date.now() - closedAt).toBeLessThan(5_000);
    await until("the run's end", async () => runStateEnded((await store.get("handover"))!.run.state));
    expect((await store.get("handover"))!.run.state).toBe(RunState.SUCCEEDED);
  }, 60_000);
});
