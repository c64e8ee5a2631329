/**
 * An acknowledgement that reached nats-server in its last moments, but that it never processed before it was
 * killed, is asked for again once the server is back: the message does not come back. (The server is frozen
 * with SIGSTOP when the handler returns, so the ack sits unread in its socket when SIGKILL takes it.)
 */
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { type Bus, openBus, type Subscription } from "../libs/bus/src/index.js";
import { TEST_LIMITS, waitFor } from "./bus-contract.js";
import { type NatsServerHandle, startNatsServer } from "./support/nats-server.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe("work-queue ack across a nats-server crash", () => {
  let server: NatsServerHandle | undefined;
  let bus: Bus | undefined;
  let sub: Subscription | undefined;
  afterEach(async () => {
    await sub?.stop({ timeoutMs: 0 });
    await bus?.close({ timeoutMs: 0 });
    await server?.stop();
  });

  it("an ack the killed server never processed is sent again after its restart; the shard is not redelivered", async () => {
    server = await startNatsServer();
    bus = await openBus({
      backend: "nats",
      natsUrl: server.url,
      namePrefix: `a${randomBytes(5).toString("hex")}`,
      limits: { ...TEST_LIMITS, workAckWaitMs: 30_000 },
    });
    const deliveries: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let handled = false;
    sub = await bus.work.consume(async (m) => {
      deliveries.push(m.deliveryCount);
      await gate;
      handled = true;
    });
    await bus.work.enqueue(new TextEncoder().encode("shard-1"), { msgId: "shard-1" });
    await waitFor(() => deliveries.length === 1, "the shard's delivery");
    // Let the server store the delivery, then freeze it and let the handler finish: its ack goes unread.
    await sleep(500);
    server.freeze();
    release();
    await waitFor(() => handled, "the handler's end");
    await sleep(300);
    await server.kill();
    await server.restart();
    await waitFor(
      async () => (await bus!.work.pending().catch(() => -1)) === 0,
      "the ack, asked again",
      20_000,
    );
    await sleep(500);
    expect(deliveries).toEqual([1]);
  }, 60_000);
});
