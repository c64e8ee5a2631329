import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Bus, openBus, type StateStore } from "@idpo/bus";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { decodeLease, leaseKey, RunLease } from "./run-lease.js";

describe("RunLease", () => {
  let dir: string;
  let bus: Bus;
  let clock = 0;
  const now = () => clock;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), "idpo-lease-"));
    bus = await openBus({ backend: "embedded", dataDir: dir });
    clock = 1_000;
  });
  afterEach(async () => {
    await bus.close({ timeoutMs: 0 });
    rmSync(dir, { recursive: true, force: true });
  });

  it("is held by one controller; another takes it only after a whole TTL without a renewal", async () => {
    const a = new RunLease(bus.state, "r1", "a", 1000, now);
    const b = new RunLease(bus.state, "r1", "b", 1000, now);
    expect(await a.tryAcquire()).toBe(true);
    expect(decodeLease((await bus.state.get(leaseKey("r1")))!.value)).toEqual({ holder: "a", ttlMs: 1000 });
    expect(await b.tryAcquire()).toBe(false);
    clock += 900;
    expect(await b.tryAcquire()).toBe(false);
    // A renewal restarts the wait: 1000 ms after b first saw the lease is not enough any more.
    expect(await a.renew()).toBe(true);
    clock += 200;
    expect(await b.tryAcquire()).toBe(false);
    clock += 999;
    expect(await b.tryAcquire()).toBe(false);
    clock += 1;
    expect(await b.tryAcquire()).toBe(true);
    // The old holder learns that it lost the lease at its next renewal.
    expect(await a.renew()).toBe(false);
    expect(a.held).toBe(false);
    await a.release();
    expect(decodeLease((await bus.state.get(leaseKey("r1")))!.value)?.holder).toBe("b");
  });

  it("waits for the holder's TTL, not its own, and is free at once after a release", async () => {
    const a = new RunLease(bus.state, "r2", "a", 5000, now);
    const b = new RunLease(bus.state, "r2", "b", 100, now);
    expect(await a.tryAcquire()).toBe(true);
    expect(await b.tryAcquire()).toBe(false);
    clock += 4999;
    expect(await b.tryAcquire()).toBe(false);
    await a.release();
    expect(await bus.state.get(leaseKey("r2"))).toBeUndefined();
    expect(await b.tryAcquire()).toBe(true);
  });

  it("restarts the wait after a failed read, so that a bus outage does not hand a live holder's run over", async () => {
    let down = false;
    const flaky = new Proxy(bus.state, {
      get(target, prop) {
        const v = Reflect.get(target, prop, target);
        if (typeof v !== "function") return v;
        return (...args: unknown[]) =>
          down
            ? Promise.reject(new Error("bus unreachable"))
            : (v as (...a: unknown[]) => unknown).apply(target, args);
      },
    }) as StateStore;
    const a = new RunLease(bus.state, "r3", "a", 1000, now);
    const b = new RunLease(flaky, "r3", "b", 1000, now);
    expect(await a.tryAcquire()).toBe(true);
    expect(await b.tryAcquire()).toBe(false);
    down = true;
    clock += 5000;
    await expect(b.tryAcquire()).rejects.toThrow(/unreachable/);
    down = false;
    expect(await b.tryAcquire()).toBe(false);
    clock += 999;
    expect(await b.tryAcquire()).toBe(false);
    expect(await a.renew()).toBe(true);
  });

  it("keeps a lease whose renewal was stored although its reply was lost", async () => {
    const a = new RunLease(bus.state, "r4", "a", 1000, now);
    expect(await a.tryAcquire()).toBe(true);
    const entry = (await bus.state.get(leaseKey("r4")))!;
    await bus.state.update(leaseKey("r4"), entry.value, entry.revision);
    expect(await a.renew()).toBe(true);
    expect(await a.renew()).toBe(true);
  });

  it("treats a value that is not a lease as held by someone unknown, expiring after its own TTL", async () => {
    await bus.state.create(leaseKey("r5"), new TextEncoder().encode("junk"));
    const b = new RunLease(bus.state, "r5", "b", 1000, now);
    expect(await b.tryAcquire()).toBe(false);
    clock += 1000;
    expect(await b.tryAcquire()).toBe(true);
  });
});
