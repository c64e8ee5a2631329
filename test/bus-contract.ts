/**
 * The one contract both bus backends must pass. `busContract(name, factory)` registers the suite for a
 * backend; test/bus-embedded.test.ts and test/bus-nats.test.ts run it.
 */
import { createHash, randomBytes } from "node:crypto";
import { context, propagation, ROOT_CONTEXT, TraceFlags, trace } from "@opentelemetry/api";
import { AsyncLocalStorageContextManager } from "@opentelemetry/context-async-hooks";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type Bus,
  type BusLimits,
  type Delivery,
  decodeReport,
  MalformedMessageError,
  RevisionConflictError,
  type Subscription,
  type TerminationReport,
} from "../libs/bus/src/index.js";

/** Opens buses of one backend. A namespace is an isolated bus (a name prefix, a directory). */
export interface BusFactory {
  /** A fresh, empty namespace. */
  namespace(): string;
  /** Open a handle on `ns`; opening it again after closing reopens the same stored data. */
  open(ns: string, limits?: Partial<BusLimits>): Promise<Bus>;
}

/** Short timings so that redelivery tests take about a second. */
export const TEST_LIMITS: Partial<BusLimits> = {
  eventsAckWaitMs: 1_000,
  workAckWaitMs: 1_000,
  backoffMs: [50, 100],
  pullExpiresMs: 1_000,
  duplicateWindowMs: 60_000,
};

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll `cond` until it holds; fail with `what` after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 8_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
}

/** A deterministic pseudo-random buffer (so that a corrupted chunk order would change the digest). */
function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

export function busContract(name: string, factory: BusFactory): void {
  describe(`bus contract: ${name}`, () => {
    const open: Bus[] = [];
    const subs: Subscription[] = [];
    async function bus(ns = factory.namespace(), limits: Partial<BusLimits> = TEST_LIMITS): Promise<Bus> {
      const b = await factory.open(ns, limits);
      open.push(b);
      return b;
    }
    function track<T extends Subscription>(s: T): T {
      subs.push(s);
      return s;
    }
    afterEach(async () => {
      await Promise.all(subs.splice(0).map((s) => s.stop({ timeoutMs: 0 })));
      await Promise.all(open.splice(0).map((b) => b.close({ timeoutMs: 0 })));
    });

    describe("event log", () => {
      it("delivers published events with subject, data, headers, seq and msgId", async () => {
        const b = await bus();
        const a1 = await b.events.publish("idpo.events.run-1.pairs_ready", enc.encode("one"), {
          msgId: "run-1/e1",
          headers: { "X-Test": "yes" },
        });
        const a2 = await b.events.publish("idpo.events.run-1.eval_completed", enc.encode("two"), {
          msgId: "run-1/e2",
        });
        expect(a1).toEqual({ seq: 1, duplicate: false });
        expect(a2).toEqual({ seq: 2, duplicate: false });
        const got: Delivery[] = [];
        track(await b.events.subscribe({ consumer: "reader" }, (m) => void got.push(m)));
        await waitFor(() => got.length === 2, "two events");
        expect(got.map((m) => [m.subject, dec.decode(m.data), m.seq, m.deliveryCount, m.msgId])).toEqual([
          ["idpo.events.run-1.pairs_ready", "one", 1, 1, "run-1/e1"],
          ["idpo.events.run-1.eval_completed", "two", 2, 1, "run-1/e2"],
        ]);
        expect(got[0].headers["X-Test"]).toBe("yes");
        expect(got[0].time).toBeInstanceOf(Date);
        expect(await b.events.lastSeq()).toBe(2);
      });

      it("stores a re-published msgId once", async () => {
        const b = await bus();
        const first = await b.events.publish("idpo.events.r.kind", enc.encode("x"), { msgId: "same" });
        const again = await b.events.publish("idpo.events.r.kind", enc.encode("x"), { msgId: "same" });
        expect(again).toEqual({ seq: first.seq, duplicate: true });
        await b.events.publish("idpo.events.r.kind", enc.encode("y"), { msgId: "other" });
        const got: string[] = [];
        track(await b.events.subscribe({ consumer: "c" }, (m) => void got.push(m.msgId)));
        await waitFor(() => got.length === 2, "two events");
        await sleep(150);
        expect(got).toEqual(["same", "other"]);
        expect(await b.events.lastSeq()).toBe(2);
      });

      it("filters by run and by kind with wildcards", async () => {
        const b = await bus();
        for (const [run, kind] of [
          ["r1", "pairs_ready"],
          ["r2", "pairs_ready"],
          ["r1", "eval_completed"],
          ["r2", "checkpoint_published"],
        ]) {
          await b.events.publish(`idpo.events.${run}.${kind}`, enc.encode(kind), { msgId: `${run}-${kind}` });
        }
        const byRun: string[] = [];
        const byKind: string[] = [];
        track(
          await b.events.subscribe(
            { consumer: "run1", filter: "idpo.events.r1.>" },
            (m) => void byRun.push(m.subject),
          ),
        );
        track(
          await b.events.subscribe(
            { consumer: "pairs", filter: "idpo.events.*.pairs_ready" },
            (m) => void byKind.push(m.subject),
          ),
        );
        await waitFor(() => byRun.length === 2 && byKind.length === 2, "filtered events");
        await sleep(150);
        expect(byRun).toEqual(["idpo.events.r1.pairs_ready", "idpo.events.r1.eval_completed"]);
        expect(byKind).toEqual(["idpo.events.r1.pairs_ready", "idpo.events.r2.pairs_ready"]);
      });

      it("resumes a durable where it stopped, and honours start positions of new durables", async () => {
        const b = await bus();
        for (let i = 1; i <= 3; i++)
          await b.events.publish("idpo.events.r.k", enc.encode(`m${i}`), { msgId: `m${i}` });
        const first: string[] = [];
        const s1 = await b.events.subscribe(
          { consumer: "durable" },
          (m) => void first.push(dec.decode(m.data)),
        );
        await waitFor(() => first.length === 3, "first three");
        await s1.stop();
        for (let i = 4; i <= 5; i++)
          await b.events.publish("idpo.events.r.k", enc.encode(`m${i}`), { msgId: `m${i}` });
        const resumed: string[] = [];
        track(
          await b.events.subscribe({ consumer: "durable" }, (m) => void resumed.push(dec.decode(m.data))),
        );
        const fromNew: string[] = [];
        track(
          await b.events.subscribe(
            { consumer: "late", start: "new" },
            (m) => void fromNew.push(dec.decode(m.data)),
          ),
        );
        const fromSeq: string[] = [];
        track(
          await b.events.subscribe(
            { consumer: "from4", start: { seq: 4 } },
            (m) => void fromSeq.push(dec.decode(m.data)),
          ),
        );
        const fromLast: string[] = [];
        track(
          await b.events.subscribe(
            { consumer: "last", start: "last" },
            (m) => void fromLast.push(dec.decode(m.data)),
          ),
        );
        await waitFor(
          () => resumed.length === 2 && fromSeq.length === 2 && fromLast.length === 1,
          "resumed events",
        );
        await b.events.publish("idpo.events.r.k", enc.encode("m6"), { msgId: "m6" });
        await waitFor(() => fromNew.length === 1 && resumed.length === 3, "m6");
        await sleep(150);
        expect(resumed).toEqual(["m4", "m5", "m6"]);
        expect(fromNew).toEqual(["m6"]);
        expect(fromSeq).toEqual(["m4", "m5", "m6"]);
        expect(fromLast).toEqual(["m5", "m6"]);
      });

      it("load-balances one durable across its subscriptions, each event handled once", async () => {
        const b = await bus();
        const seen: number[] = [];
        const per = [0, 0];
        for (const w of [0, 1]) {
          track(
            await b.events.subscribe({ consumer: "shared" }, async (m) => {
              per[w]++;
              seen.push(m.seq);
              await sleep(30);
            }),
          );
        }
        for (let i = 0; i < 12; i++)
          await b.events.publish("idpo.events.r.k", enc.encode(String(i)), { msgId: `e${i}` });
        await waitFor(() => seen.length >= 12, "12 events");
        await sleep(200);
        expect([...seen].sort((x, y) => x - y)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
        expect(per[0]).toBeGreaterThan(0);
        expect(per[1]).toBeGreaterThan(0);
      });

      it("redelivers after a handler error, with backoff, until it succeeds", async () => {
        const b = await bus();
        const attempts: { count: number; at: number }[] = [];
        let done = false;
        track(
          await b.events.subscribe({ consumer: "flaky", backoffMs: [150, 300] }, (m) => {
            attempts.push({ count: m.deliveryCount, at: Date.now() });
            if (m.deliveryCount < 3) throw new Error(`transient failure ${m.deliveryCount}`);
            done = true;
          }),
        );
        await b.events.publish("idpo.events.r.k", enc.encode("x"), { msgId: "x" });
        await waitFor(() => done, "third delivery");
        await sleep(1_100);
        expect(attempts.map((a) => a.count)).toEqual([1, 2, 3]);
        expect(attempts[1].at - attempts[0].at).toBeGreaterThanOrEqual(140);
        expect(attempts[2].at - attempts[1].at).toBeGreaterThanOrEqual(290);
      });

      it("terminates after maxDeliver failures and reports it exactly once", async () => {
        const b = await bus();
        const reports: TerminationReport[] = [];
        let calls = 0;
        track(
          await b.events.subscribe(
            { consumer: "doomed", maxDeliver: 3, onTerminated: (r) => void reports.push(r) },
            () => {
              calls++;
              throw new Error("always fails");
            },
          ),
        );
        await b.events.publish("idpo.events.r.k", enc.encode("poison"), {
          msgId: "poison",
          headers: { "X-Why": "t" },
        });
        await waitFor(() => reports.length === 1, "termination report");
        await sleep(1_100);
        expect(calls).toBe(3);
        expect(reports).toHaveLength(1);
        expect(reports[0]).toMatchObject({
          source: "events",
          consumer: "doomed",
          subject: "idpo.events.r.k",
          seq: 1,
          msgId: "poison",
          deliveryCount: 3,
          reason: "max-deliver",
          error: "always fails",
        });
        const stored: TerminationReport[] = [];
        track(
          await b.events.subscribe(
            { consumer: "audit", filter: "idpo.reports.>" },
            (m) => void stored.push(decodeReport(m)),
          ),
        );
        await waitFor(() => stored.length === 1, "stored report");
        await sleep(150);
        expect(stored).toHaveLength(1);
        expect(dec.decode(stored[0].data)).toBe("poison");
        expect(stored[0].headers["X-Why"]).toBe("t");
        expect(stored[0].reason).toBe("max-deliver");
      });

      it("terminates a malformed event at once, reports it, and keeps consuming", async () => {
        const b = await bus();
        const reports: TerminationReport[] = [];
        const ok: string[] = [];
        let calls = 0;
        track(
          await b.events.subscribe({ consumer: "strict", onTerminated: (r) => void reports.push(r) }, (m) => {
            calls++;
            const text = dec.decode(m.data);
            if (!text.startsWith("{")) throw new MalformedMessageError(`not an object: ${text}`);
            ok.push(text);
          }),
        );
        await b.events.publish("idpo.events.r.k", enc.encode("garbage"), { msgId: "bad" });
        await b.events.publish("idpo.events.r.k", enc.encode("{}"), { msgId: "good" });
        await waitFor(() => reports.length === 1 && ok.length === 1, "report and good event");
        await sleep(1_100);
        expect(calls).toBe(2);
        expect(reports[0]).toMatchObject({ reason: "malformed", deliveryCount: 1, msgId: "bad" });
        expect(reports[0].error).toContain("not an object");
      });

      it("redelivers an event whose handler never settles after ackWait, to another subscription", async () => {
        const b = await bus();
        let started = false;
        const stuck = await b.events.subscribe({ consumer: "ha" }, async () => {
          started = true;
          await new Promise(() => {});
        });
        await b.events.publish("idpo.events.r.k", enc.encode("x"), { msgId: "x" });
        await waitFor(() => started, "first delivery");
        await stuck.stop({ timeoutMs: 0 });
        const t0 = Date.now();
        const second: number[] = [];
        track(await b.events.subscribe({ consumer: "ha" }, (m) => void second.push(m.deliveryCount)));
        await waitFor(() => second.length === 1, "redelivery");
        expect(second).toEqual([2]);
        expect(Date.now() - t0).toBeLessThan(3_000);
      });

      it("keeps a long handler's event with working() heartbeats", async () => {
        const b = await bus();
        const deliveries: number[] = [];
        let finished = false;
        track(
          await b.events.subscribe({ consumer: "long" }, async (m) => {
            deliveries.push(m.deliveryCount);
            // 1.5 s of work against a 1 s ackWait: without the heartbeats it would be redelivered.
            for (let i = 0; i < 5; i++) {
              await sleep(300);
              m.working();
            }
            finished = true;
          }),
        );
        await b.events.publish("idpo.events.r.k", enc.encode("x"), { msgId: "x" });
        await waitFor(() => finished, "long handler", 6_000);
        await sleep(300);
        expect(deliveries).toEqual([1]);
      });

      it("carries the OpenTelemetry trace context in headers to the handler", async () => {
        propagation.setGlobalPropagator(new W3CTraceContextPropagator());
        const manager = new AsyncLocalStorageContextManager().enable();
        context.setGlobalContextManager(manager);
        try {
          const b = await bus();
          const traceId = "4bf92f3577b34da6a3ce929d0e0e4736";
          const parent = trace.setSpanContext(ROOT_CONTEXT, {
            traceId,
            spanId: "00f067aa0ba902b7",
            traceFlags: TraceFlags.SAMPLED,
          });
          await context.with(parent, () =>
            b.events.publish("idpo.events.r.k", enc.encode("x"), { msgId: "traced" }),
          );
          await context.with(parent, () => b.work.enqueue(enc.encode("w"), { msgId: "traced-w" }));
          const seen: { header?: string; fromMsg?: string; active?: string }[] = [];
          const handler = (m: Delivery) => {
            seen.push({
              header: m.headers.traceparent,
              fromMsg: trace.getSpanContext(m.context)?.traceId,
              active: trace.getSpanContext(context.active())?.traceId,
            });
          };
          track(await b.events.subscribe({ consumer: "traced" }, handler));
          track(await b.work.consume(handler));
          await waitFor(() => seen.length === 2, "traced deliveries");
          for (const s of seen) {
            expect(s.header).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
            expect(s.fromMsg).toBe(traceId);
            expect(s.active).toBe(traceId);
          }
        } finally {
          context.disable();
          propagation.disable();
        }
      });

      it("lets a durable change its ack wait but not its filter", async () => {
        const b = await bus();
        const s1 = await b.events.subscribe(
          { consumer: "d", filter: "idpo.events.a.>", ackWaitMs: 1_000 },
          () => {},
        );
        await s1.stop();
        const s2 = await b.events.subscribe(
          { consumer: "d", filter: "idpo.events.a.>", ackWaitMs: 2_000 },
          () => {},
        );
        await s2.stop();
        await expect(
          b.events.subscribe({ consumer: "d", filter: "idpo.events.b.>" }, () => {}),
        ).rejects.toThrow(/consumer d .*exists with filter .*idpo\.events\.a\.>/);
      });

      it("rejects bad subjects, filters and missing msgIds with messages naming them", async () => {
        const b = await bus();
        await expect(b.events.publish("idpo.events.r", enc.encode("x"), { msgId: "a" })).rejects.toThrow(
          /idpo\.events\.<runId>\.<kind>/,
        );
        await expect(b.events.publish("other.r.k", enc.encode("x"), { msgId: "a" })).rejects.toThrow(
          /other\.r\.k/,
        );
        await expect(b.events.publish("idpo.events.r.k k", enc.encode("x"), { msgId: "a" })).rejects.toThrow(
          /token/,
        );
        await expect(b.events.publish("idpo.events.r.k", enc.encode("x"), { msgId: "" })).rejects.toThrow(
          /msgId/,
        );
        await expect(b.events.subscribe({ consumer: "c", filter: "idpo.work.>" }, () => {})).rejects.toThrow(
          /idpo\.work\.>/,
        );
        await expect(b.events.subscribe({ consumer: "bad name" }, () => {})).rejects.toThrow(/consumer name/);
        await expect(b.events.subscribe({ consumer: "c", maxDeliver: 0 }, () => {})).rejects.toThrow(
          /maxDeliver/,
        );
      });
    });

    describe("work queue", () => {
      it("removes an item once its handler resolved, not before; dedups by msgId", async () => {
        const b = await bus();
        expect((await b.work.enqueue(enc.encode("s1"), { msgId: "shard-1" })).duplicate).toBe(false);
        expect((await b.work.enqueue(enc.encode("s1"), { msgId: "shard-1" })).duplicate).toBe(true);
        expect(await b.work.pending()).toBe(1);
        let release!: () => void;
        const gate = new Promise<void>((r) => {
          release = r;
        });
        const got: string[] = [];
        track(
          await b.work.consume(async (m) => {
            got.push(dec.decode(m.data));
            await gate;
          }),
        );
        await waitFor(() => got.length === 1, "delivery");
        await sleep(100);
        expect(await b.work.pending()).toBe(1);
        release();
        await waitFor(async () => (await b.work.pending()) === 0, "ack");
        expect(got).toEqual(["s1"]);
      });

      it("runs up to `concurrency` items at once per worker", async () => {
        const b = await bus();
        for (let i = 0; i < 6; i++) await b.work.enqueue(enc.encode(String(i)), { msgId: `c${i}` });
        let running = 0;
        let peak = 0;
        let done = 0;
        track(
          await b.work.consume(
            async () => {
              running++;
              peak = Math.max(peak, running);
              await sleep(150);
              running--;
              done++;
            },
            { concurrency: 2 },
          ),
        );
        await waitFor(() => done === 6, "six items");
        expect(peak).toBe(2);
      });

      it("gives each item to exactly one of several workers", async () => {
        const b1 = await bus();
        const handled: string[] = [];
        for (let w = 0; w < 3; w++) {
          track(
            await b1.work.consume(async (m) => {
              handled.push(dec.decode(m.data));
              await sleep(10);
            }),
          );
        }
        for (let i = 0; i < 20; i++) await b1.work.enqueue(enc.encode(`i${i}`), { msgId: `i${i}` });
        await waitFor(() => handled.length >= 20, "20 items");
        await sleep(200);
        expect([...handled].sort()).toEqual(Array.from({ length: 20 }, (_, i) => `i${i}`).sort());
        expect(await b1.work.pending()).toBe(0);
      });

      it("redelivers a dead worker's item to another worker after ackWait", async () => {
        const b = await bus();
        let started = false;
        const dying = await b.work.consume(async () => {
          started = true;
          await new Promise(() => {});
        });
        await b.work.enqueue(enc.encode("shard"), { msgId: "shard" });
        await waitFor(() => started, "first worker");
        await dying.stop({ timeoutMs: 0 });
        const t0 = Date.now();
        const survivor: number[] = [];
        track(await b.work.consume((m) => void survivor.push(m.deliveryCount)));
        await waitFor(() => survivor.length === 1, "redelivery");
        const waited = Date.now() - t0;
        expect(survivor).toEqual([2]);
        expect(waited).toBeLessThan(3_000);
        await waitFor(async () => (await b.work.pending()) === 0, "ack");
      });

      it("terminates an item failing maxDeliver times, reports it once, and removes it", async () => {
        const b = await bus();
        const before: TerminationReport[] = [];
        const after: TerminationReport[] = [];
        let calls = 0;
        track(
          await b.work.consume(
            () => {
              calls++;
              throw new Error(`generation failed (${calls})`);
            },
            {
              maxDeliver: 2,
              beforeTerminate: async (r) => {
                before.push(r);
              },
              onTerminated: (r) => void after.push(r),
            },
          ),
        );
        await b.work.enqueue(enc.encode("bad shard"), { msgId: "bad" });
        await waitFor(() => after.length === 1, "termination");
        await sleep(1_100);
        expect(calls).toBe(2);
        expect(before).toHaveLength(1);
        expect(after).toHaveLength(1);
        expect(after[0]).toMatchObject({
          source: "work",
          consumer: "shard-workers",
          reason: "max-deliver",
          deliveryCount: 2,
          error: "generation failed (2)",
          msgId: "bad",
        });
        expect(await b.work.pending()).toBe(0);
        const stored: TerminationReport[] = [];
        track(
          await b.events.subscribe(
            { consumer: "audit", filter: "idpo.reports.work.>" },
            (m) => void stored.push(decodeReport(m)),
          ),
        );
        await waitFor(() => stored.length === 1, "stored report");
        expect(dec.decode(stored[0].data)).toBe("bad shard");
      });

      it("terminates and reports an item whose worker died on its last delivery", async () => {
        const b = await bus();
        let started = false;
        const dying = await b.work.consume(
          async () => {
            started = true;
            await new Promise(() => {});
          },
          { maxDeliver: 1 },
        );
        await b.work.enqueue(enc.encode("x"), { msgId: "x" });
        await waitFor(() => started, "first delivery");
        await dying.stop({ timeoutMs: 0 });
        const reports: TerminationReport[] = [];
        let calls = 0;
        track(
          await b.work.consume(
            () => {
              calls++;
            },
            { maxDeliver: 1, onTerminated: (r) => void reports.push(r) },
          ),
        );
        await waitFor(() => reports.length === 1, "termination");
        expect(calls).toBe(0);
        expect(reports[0].reason).toBe("max-deliver");
        // 2 when the next delivery reaches the new worker; on NATS a pull the stopped worker left open
        // may take one more redelivery first, which nobody handles either.
        expect(reports[0].deliveryCount).toBeGreaterThanOrEqual(2);
        expect(reports[0].error).toMatch(/not acknowledged after \d+ deliveries/);
        await waitFor(async () => (await b.work.pending()) === 0, "removal");
      });

      it("terminates a malformed item at once and keeps working", async () => {
        const b = await bus();
        const reports: TerminationReport[] = [];
        const ok: string[] = [];
        track(
          await b.work.consume(
            (m) => {
              const t = dec.decode(m.data);
              if (t === "bad") throw new MalformedMessageError("shard task does not decode");
              ok.push(t);
            },
            { onTerminated: (r) => void reports.push(r) },
          ),
        );
        await b.work.enqueue(enc.encode("bad"), { msgId: "bad" });
        await b.work.enqueue(enc.encode("good"), { msgId: "good" });
        await waitFor(() => reports.length === 1 && ok.length === 1, "report and good item");
        expect(reports[0]).toMatchObject({ reason: "malformed", deliveryCount: 1 });
        await waitFor(async () => (await b.work.pending()) === 0, "both settled");
      });
    });

    describe("state store", () => {
      it("creates, reads, compare-and-sets, deletes and lists keys", async () => {
        const b = await bus();
        const s = b.state;
        expect(await s.get("runs.r1")).toBeUndefined();
        const r1 = await s.create("runs.r1", enc.encode("v1"));
        await expect(s.create("runs.r1", enc.encode("v1b"))).rejects.toBeInstanceOf(RevisionConflictError);
        const e1 = await s.get("runs.r1");
        expect(e1 && dec.decode(e1.value)).toBe("v1");
        expect(e1?.revision).toBe(r1);
        const r2 = await s.update("runs.r1", enc.encode("v2"), r1);
        expect(r2).toBeGreaterThan(r1);
        const stale = s.update("runs.r1", enc.encode("v3"), r1);
        await expect(stale).rejects.toBeInstanceOf(RevisionConflictError);
        await expect(s.update("runs.r1", enc.encode("v3"), r1)).rejects.toThrow(/runs\.r1.*revision/);
        await s.put("runs.r2", enc.encode("x"));
        await s.put("runs.r10", enc.encode("x"));
        await s.put("jobs.j1", enc.encode("x"));
        expect(await s.keys("runs.")).toEqual(["runs.r1", "runs.r10", "runs.r2"]);
        expect(await s.keys("runs.r1")).toEqual(["runs.r1", "runs.r10"]);
        expect(await s.keys()).toEqual(["jobs.j1", "runs.r1", "runs.r10", "runs.r2"]);
        await expect(s.delete("runs.r1", r1)).rejects.toBeInstanceOf(RevisionConflictError);
        await s.delete("runs.r1", r2);
        expect(await s.get("runs.r1")).toBeUndefined();
        await s.delete("runs.missing");
        const r3 = await s.create("runs.r1", enc.encode("again"));
        expect(r3).toBeGreaterThan(r2);
        await expect(s.put("bad key", enc.encode("x"))).rejects.toThrow(/state key "bad key"/);
        await expect(s.get(".lead")).rejects.toThrow(/state key/);
      });

      it("lets exactly one of two concurrent writers win a compare-and-set", async () => {
        const b1 = await bus();
        const rev = await b1.state.create("runs.race", enc.encode("iter-1"));
        const results = await Promise.allSettled([
          b1.state.update("runs.race", enc.encode("iter-2 by A"), rev),
          b1.state.update("runs.race", enc.encode("iter-2 by B"), rev),
        ]);
        const won = results.filter((r) => r.status === "fulfilled");
        const lost = results.filter((r) => r.status === "rejected");
        expect(won).toHaveLength(1);
        expect(lost).toHaveLength(1);
        expect((lost[0] as PromiseRejectedResult).reason).toBeInstanceOf(RevisionConflictError);
        const e = await b1.state.get("runs.race");
        expect(e?.revision).toBe((won[0] as PromiseFulfilledResult<number>).value);
      });

      it("watches a prefix: existing values first, then puts and deletes in order", async () => {
        const b = await bus();
        await b.state.put("runs.a", enc.encode("a0"));
        await b.state.put("jobs.x", enc.encode("x"));
        const w = await b.state.watch("runs.");
        const seen: string[] = [];
        const done = (async () => {
          for await (const c of w) {
            seen.push(`${c.op} ${c.key} ${dec.decode(c.value)}`);
            if (seen.length === 4) w.stop();
          }
        })();
        await sleep(100);
        await b.state.put("runs.b", enc.encode("b0"));
        await b.state.put("jobs.y", enc.encode("y"));
        await b.state.put("runs.a", enc.encode("a1"));
        await b.state.delete("runs.b");
        await done;
        expect(seen).toEqual(["put runs.a a0", "put runs.b b0", "put runs.a a1", "delete runs.b "]);
        const updatesOnly = await b.state.watch("runs.", { includeExisting: false });
        const it = updatesOnly[Symbol.asyncIterator]();
        const next = it.next();
        await sleep(50);
        await b.state.put("runs.c", enc.encode("c0"));
        const r = await next;
        expect(r.done).toBe(false);
        expect(r.value.key).toBe("runs.c");
        updatesOnly.stop();
      });
    });

    describe("artifact store", () => {
      it("puts, gets, lists, replaces and deletes objects with sha256 digests and metadata", async () => {
        const b = await bus();
        const a = b.artifacts;
        const data = bytes(300_000, 1);
        const info = await a.put("runs/r1/pairs/shard-0.bin", data, {
          meta: { "content-type": "application/x-pairs" },
        });
        expect(info).toMatchObject({
          name: "runs/r1/pairs/shard-0.bin",
          size: 300_000,
          digest: sha256(data),
        });
        expect(info.meta).toEqual({ "content-type": "application/x-pairs" });
        expect(sha256((await a.get("runs/r1/pairs/shard-0.bin"))!)).toBe(sha256(data));
        await a.put("runs/r1/grid.png", bytes(10, 2));
        await a.put("runs/r2/grid.png", new Uint8Array(0));
        expect((await a.list("runs/r1/")).map((i) => i.name)).toEqual([
          "runs/r1/grid.png",
          "runs/r1/pairs/shard-0.bin",
        ]);
        expect((await a.list()).length).toBe(3);
        expect((await a.get("runs/r2/grid.png"))?.length).toBe(0);
        const replaced = await a.put("runs/r1/grid.png", bytes(20, 3), { meta: { v: "2" } });
        expect((await a.info("runs/r1/grid.png"))?.digest).toBe(replaced.digest);
        expect((await a.get("runs/r1/grid.png"))?.length).toBe(20);
        expect(await a.delete("runs/r1/grid.png")).toBe(true);
        expect(await a.delete("runs/r1/grid.png")).toBe(false);
        expect(await a.get("runs/r1/grid.png")).toBeUndefined();
        expect(await a.info("runs/r1/grid.png")).toBeUndefined();
        expect(await a.getStream("nope")).toBeUndefined();
        await expect(a.put("", bytes(1, 1))).rejects.toThrow(/artifact name/);
      });

      it("streams a checkpoint-sized object in and out", async () => {
        const b = await bus();
        const chunk = 1 << 20;
        const total = 16;
        const whole = createHash("sha256");
        async function* chunks() {
          for (let i = 0; i < total; i++) {
            const c = new Uint8Array(randomBytes(chunk));
            whole.update(c);
            yield c;
          }
        }
        const info = await b.artifacts.put("ckpt/policy-iter-1.safetensors", chunks(), {
          meta: { step: "100" },
        });
        const expected = whole.digest("hex");
        expect(info.size).toBe(total * chunk);
        expect(info.digest).toBe(expected);
        const stream = await b.artifacts.getStream("ckpt/policy-iter-1.safetensors");
        const h = createHash("sha256");
        let n = 0;
        for await (const c of stream!) {
          h.update(c);
          n += c.length;
        }
        expect(n).toBe(total * chunk);
        expect(h.digest("hex")).toBe(expected);
        expect(sha256((await b.artifacts.get("ckpt/policy-iter-1.safetensors"))!)).toBe(expected);
      });
    });

    describe("persistence", () => {
      let ns: string;
      beforeAll(() => {
        ns = factory.namespace();
      });

      it("keeps state, artifacts, events, durable positions, dedup and unacked work across a reopen", async () => {
        const b1 = await factory.open(ns, TEST_LIMITS);
        const rev = await b1.state.create("runs.p", enc.encode("persisted"));
        await b1.artifacts.put("p/a.bin", bytes(5_000, 9), { meta: { k: "v" } });
        for (let i = 1; i <= 3; i++)
          await b1.events.publish("idpo.events.p.k", enc.encode(`e${i}`), { msgId: `e${i}` });
        const first: string[] = [];
        const s = await b1.events.subscribe(
          { consumer: "keeper" },
          (m) => void first.push(dec.decode(m.data)),
        );
        await waitFor(() => first.length === 3, "first events");
        await s.stop();
        await b1.work.enqueue(enc.encode("done"), { msgId: "w-done" });
        await b1.work.enqueue(enc.encode("open"), { msgId: "w-open" });
        let taken = 0;
        const w = await b1.work.consume(async (m) => {
          taken++;
          if (dec.decode(m.data) === "open") await new Promise(() => {});
        });
        await waitFor(() => taken === 2, "both items taken");
        await w.stop({ timeoutMs: 0 });
        await b1.close({ timeoutMs: 0 });

        const b2 = await bus(ns);
        const e = await b2.state.get("runs.p");
        expect(e && dec.decode(e.value)).toBe("persisted");
        expect(e?.revision).toBe(rev);
        await expect(b2.state.update("runs.p", enc.encode("x"), rev + 100)).rejects.toBeInstanceOf(
          RevisionConflictError,
        );
        expect(sha256((await b2.artifacts.get("p/a.bin"))!)).toBe(sha256(bytes(5_000, 9)));
        expect((await b2.artifacts.info("p/a.bin"))?.meta).toEqual({ k: "v" });
        expect(await b2.events.lastSeq()).toBe(3);
        expect(
          (await b2.events.publish("idpo.events.p.k", enc.encode("e3"), { msgId: "e3" })).duplicate,
        ).toBe(true);
        expect((await b2.work.enqueue(enc.encode("done"), { msgId: "w-done" })).duplicate).toBe(true);
        await b2.events.publish("idpo.events.p.k", enc.encode("e4"), { msgId: "e4" });
        const resumed: string[] = [];
        track(
          await b2.events.subscribe({ consumer: "keeper" }, (m) => void resumed.push(dec.decode(m.data))),
        );
        expect(await b2.work.pending()).toBe(1);
        const redelivered: string[] = [];
        track(
          await b2.work.consume((m) => void redelivered.push(`${dec.decode(m.data)}#${m.deliveryCount}`)),
        );
        await waitFor(() => resumed.length === 1 && redelivered.length === 1, "resumed event and work");
        expect(resumed).toEqual(["e4"]);
        expect(redelivered).toEqual(["open#2"]);
        await waitFor(async () => (await b2.work.pending()) === 0, "work acked");
      });
    });
  });
}
