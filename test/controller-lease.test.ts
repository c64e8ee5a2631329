/**
 * The controller's run lease on a real NATS KV (a spawned nats-server or container): two connections, as two
 * controller processes would have; one holds the lease, the other takes it over only after the holder stops
 * renewing; a NATS crash longer than the TTL does not hand a live holder's run over.
 */
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Bus, openBus } from "../libs/bus/src/index.js";
import { RunLease } from "../services/controller/src/run-lease.js";
import { TEST_LIMITS } from "./bus-contract.js";
import { startTestNats, type TestNats } from "./support/nats.js";

const TTL_MS = 500;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("controller run lease on NATS", () => {
  let server: TestNats;
  const buses: Bus[] = [];
  let prefix = "";

  async function connection(): Promise<Bus> {
    const b = await openBus({
      backend: "nats",
      natsUrl: server.url,
      namePrefix: prefix,
      limits: TEST_LIMITS,
    });
    buses.push(b);
    return b;
  }

  beforeAll(async () => {
    server = await startTestNats();
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close({ timeoutMs: 0 })));
  });

  it("one holder while it renews; the other takes over a TTL after the renewals stop", async () => {
    prefix = `l${randomBytes(5).toString("hex")}`;
    const a = new RunLease((await connection()).state, "run-1", "a", TTL_MS);
    const b = new RunLease((await connection()).state, "run-1", "b", TTL_MS);
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
    prefix = `l${randomBytes(5).toString("hex")}`;
    const a = new RunLease((await connection()).state, "run-2", "a", TTL_MS);
    const b = new RunLease((await connection()).state, "run-2", "b", TTL_MS);
    expect(await a.tryAcquire()).toBe(true);
    expect(await b.tryAcquire()).toBe(false);
    await server.kill();
    await expect(b.tryAcquire()).rejects.toThrow();
    await sleep(3 * TTL_MS);
    await server.restart();
    // Both reconnect; the holder renews at its next interval.
    for (;;) {
      try {
        expect(await a.renew()).toBe(true);
        break;
      } catch {
        await sleep(100);
      }
    }
    expect(await b.tryAcquire()).toBe(false);
  }, 60_000);
});
