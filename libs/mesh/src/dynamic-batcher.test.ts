import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { DynamicBatcher } from "./dynamic-batcher.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A batcher whose runner records each batch and answers item × 10 after `runMs`. */
function recording(limits: { maxBatch: number; maxDelayMs: number; maxQueue: number }, runMs = 0) {
  const batches: { group: string; items: number[] }[] = [];
  let release: (() => void) | undefined;
  const batcher = new DynamicBatcher<string, number, number>(limits, async (group, items) => {
    batches.push({ group, items: [...items] });
    if (runMs > 0) await sleep(runMs);
    if (runMs < 0) await new Promise<void>((r) => (release = r));
    if (items.includes(-1)) throw new Error("item -1 fails its batch");
    return items.map((x) => x * 10);
  });
  return { batcher, batches, release: () => release?.() };
}

async function failure(p: Promise<unknown>): Promise<ConnectError | Error> {
  return p.then(
    () => {
      throw new Error("expected a failure");
    },
    (e: ConnectError | Error) => e,
  );
}

describe("DynamicBatcher", () => {
  it("merges concurrent requests of one key into a batch after the delay, results back in order", async () => {
    const { batcher, batches } = recording({ maxBatch: 10, maxDelayMs: 30, maxQueue: 100 });
    const out = await Promise.all([
      batcher.submit("k", "g", [1, 2]),
      batcher.submit("k", "g", [3]),
      batcher.submit("k", "g", [4, 5, 6]),
    ]);
    expect(out).toEqual([[10, 20], [30], [40, 50, 60]]);
    expect(batches).toEqual([{ group: "g", items: [1, 2, 3, 4, 5, 6] }]);
    expect(batcher.stats).toMatchObject({ batches: 1, items: 6, largestBatch: 6 });
  });

  it("runs a full batch at once without waiting for the delay", async () => {
    const { batcher, batches } = recording({ maxBatch: 3, maxDelayMs: 60_000, maxQueue: 100 });
    const t = Date.now();
    expect(await batcher.submit("k", "g", [1, 2, 3])).toEqual([10, 20, 30]);
    expect(Date.now() - t).toBeLessThan(5_000);
    expect(batches).toHaveLength(1);
  });

  it("splits a request larger than max_batch and keeps keys apart", async () => {
    const { batcher, batches } = recording({ maxBatch: 2, maxDelayMs: 5, maxQueue: 100 });
    const [a, b] = await Promise.all([
      batcher.submit("a", "ga", [1, 2, 3, 4, 5]),
      batcher.submit("b", "gb", [7]),
    ]);
    expect(a).toEqual([10, 20, 30, 40, 50]);
    expect(b).toEqual([70]);
    expect(batches.filter((x) => x.group === "ga").map((x) => x.items)).toEqual([[1, 2], [3, 4], [5]]);
    expect(batches.filter((x) => x.group === "gb").map((x) => x.items)).toEqual([[7]]);
    for (const x of batches)
      expect(new Set(x.items.map((i) => (i === 7 ? "gb" : "ga")))).toEqual(new Set([x.group]));
  });

  it("refuses what does not fit in the queue with RESOURCE_EXHAUSTED", async () => {
    const { batcher } = recording({ maxBatch: 10, maxDelayMs: 50, maxQueue: 3 });
    const first = batcher.submit("k", "g", [1, 2]);
    const err = await failure(batcher.submit("k", "g", [3, 4]));
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((err as ConnectError).rawMessage).toBe("queue is full: 2 items waiting, limit 3");
    expect(await batcher.submit("k", "g", [3])).toEqual([30]);
    expect(await first).toEqual([10, 20]);
    expect(batcher.stats.rejectedFull).toBe(1);
  });

  it("drops a request whose signal aborts while queued and frees its places", async () => {
    const { batcher, batches } = recording({ maxBatch: 10, maxDelayMs: 80, maxQueue: 3 });
    const ac = new AbortController();
    const doomed = batcher.submit("k", "g", [1, 2, 3], ac.signal);
    ac.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
    const err = await failure(doomed);
    expect((err as ConnectError).code).toBe(Code.DeadlineExceeded);
    expect(batcher.queueLength).toBe(0);
    expect(await batcher.submit("k", "g", [4, 5, 6])).toEqual([40, 50, 60]);
    expect(batches).toEqual([{ group: "g", items: [4, 5, 6] }]);
    expect(batcher.stats.droppedExpired).toBe(1);
  });

  it("lets items already running finish before failing an aborted request", async () => {
    const { batcher, batches, release } = recording({ maxBatch: 2, maxDelayMs: 0, maxQueue: 10 }, -1);
    const ac = new AbortController();
    let settled = false;
    const p = batcher.submit("k", "g", [1, 2, 3], ac.signal).finally(() => {
      settled = true;
    });
    await sleep(10);
    expect(batches).toEqual([{ group: "g", items: [1, 2] }]);
    ac.abort(new Error("client went away"));
    await sleep(10);
    expect(settled).toBe(false);
    expect(batcher.queueLength).toBe(0);
    release();
    const err = await failure(p);
    expect((err as ConnectError).code).toBe(Code.Canceled);
    await batcher.idle();
    expect(batches).toHaveLength(1);
  });

  it("fails every request of a failing batch with its error, and keeps going", async () => {
    const { batcher } = recording({ maxBatch: 4, maxDelayMs: 10, maxQueue: 10 });
    const [a, b] = await Promise.allSettled([batcher.submit("k", "g", [1]), batcher.submit("k", "g", [-1])]);
    expect(a.status).toBe("rejected");
    expect(b.status).toBe("rejected");
    expect(((a as PromiseRejectedResult).reason as Error).message).toMatch(/item -1 fails its batch/);
    expect(await batcher.submit("k", "g", [2])).toEqual([20]);
  });

  it("close fails queued requests with UNAVAILABLE and refuses new ones", async () => {
    const { batcher } = recording({ maxBatch: 10, maxDelayMs: 60_000, maxQueue: 10 });
    const queued = batcher.submit("k", "g", [1]);
    batcher.close();
    expect(((await failure(queued)) as ConnectError).code).toBe(Code.Unavailable);
    expect(((await failure(batcher.submit("k", "g", [2]))) as ConnectError).code).toBe(Code.Unavailable);
    await batcher.idle();
  });

  it("rejects bad limits", () => {
    const run = async () => [];
    expect(() => new DynamicBatcher({ maxBatch: 0, maxDelayMs: 0, maxQueue: 1 }, run)).toThrow(/maxBatch/);
    expect(() => new DynamicBatcher({ maxBatch: 1, maxDelayMs: -1, maxQueue: 1 }, run)).toThrow(/maxDelayMs/);
    expect(() => new DynamicBatcher({ maxBatch: 1, maxDelayMs: 0, maxQueue: 0 }, run)).toThrow(/maxQueue/);
  });
});
