/**
 * The controller's run lease on a real NATS KV (a spawned nats-server or container): two connections, as two
 * controller processes would have; one holds the lease, the other takes it over only after the holder stops
 * renewing; a NATS crash longer than the TTL does not hand a live holder's run over.
 */
import { describe, expect, it } from "vitest";
import { RunLease } from "../services/controller/src/run-lease.js";
import { natsBuses } from "./support/nats-buses.js";

const TTL_MS = 500;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("controller run lease on NATS", () => {
  const nats = natsBuses("l");

  it("one holder while it renews; the other takes over a TTL after the renewals stop", async () => {
    nats.fresh();
    const a = new RunLease((await nats.connection()).state, "run-1", "a", TTL_MS);
    const b = new RunLease((await nats.connection()).state, "run-1", "b", TTL_MS);
    expect(await a.tryAcquire()).toBe(true);
    for (let i = 0; i < 8; i++) {
      expect(await b.tryAcquire()).toBe(false);
      expect(await a.renew()).toBe(true);
      await sleep(TTL_MS / 3);
    }
    const stopped = Date.now();
    let took = 0;
    while (!(await b.tryAcquire())) {
      await sleep(TTL_MS / 5);
      took = Date.now() - stopped;
      expect(took).toBeLessThan(10 * TTL_MS);
    }
    expect(took).toBeGreaterThanOrEqual(TTL_MS - 50);
    expect(await a.renew()).toBe(false);
    await b.release();
    expect(await a.tryAcquire()).toBe(true);
  });

  it("a NATS crash longer than the TTL does not hand a live holder's run over", async () => {
    nats.fresh();
    const a = new RunLease((await nats.connection()).state, "run-2", "a", TTL_MS);
    const b = new RunLease((await nats.connection()).state, "run-2", "b", TTL_MS);
    expect(await a.tryAcquire()).toBe(true);
    expect(await b.tryAcquire()).toBe(false);
    await nats.server().kill();
    await expect(b.tryAcquire()).rejects.toThrow();
    await sleep(3 * TTL_MS);
    await nats.server().restart();
    // Both reconnect, each in its own time; the holder renews at its next interval, and the other, once it
    // can read the lease again, is refused.
    expect(await onceReconnected(() => a.renew())).toBe(true);
    expect(await onceReconnected(() => b.tryAcquire())).toBe(false);
  }, 60_000);
});

/** The result of `call` once it stops failing for want of a connection (retried every 100 ms). */
async function onceReconnected<T>(call: () => Promise<T>): Promise<T> {
  for (;;) {
    try {
      return await call();
    } catch {
      await sleep(100);
    }
  }
}
