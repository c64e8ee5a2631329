import type { Consumer, ConsumerMessages, JsMsg } from "@nats-io/jetstream";
import type { MsgHdrs, NatsConnection } from "@nats-io/transport-node";
import type { DeliveryRunner } from "../delivery.js";
import type { SubjectMapper } from "../subjects.js";
import type { Headers, StopOptions, Subscription } from "../types.js";

/** NATS headers → a plain record (first value of each name). */
export function fromNatsHeaders(h: MsgHdrs | undefined): Headers {
  const out: Headers = {};
  if (!h) return out;
  for (const [k, values] of h) if (values.length > 0) out[k] = values[0];
  return out;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** How long an ack waits for the server's confirmation before it is sent again. */
const ACK_CONFIRM_MS = 5_000;
/** The payload of a positive acknowledgement. */
const ACK = new TextEncoder().encode("+ACK");

/**
 * Workers of a durable pull consumer: `concurrency` loops, each pulling ONE message, running it and only
 * then pulling the next. Pulling one at a time (instead of a prefetching `consume()`) keeps messages from
 * waiting in a client buffer while their ack-wait clock runs, which matters for long work items.
 */
export class NatsPullSubscription implements Subscription {
  private stopping = false;
  private readonly loops: Promise<void>[] = [];
  /** Outstanding pull requests, stopped at once by `stop` (the server skips pulls nobody listens to). */
  private readonly pulls = new Set<ConsumerMessages>();
  private abandon!: () => void;
  private readonly abandoned = new Promise<void>((r) => {
    this.abandon = r;
  });
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => {
    this.resolveClosed = r;
  });

  constructor(
    private readonly nc: NatsConnection,
    private readonly consumer: Consumer,
    private readonly runner: DeliveryRunner,
    private readonly subjects: SubjectMapper,
    private readonly expiresMs: number,
    private readonly onStopped: (s: NatsPullSubscription) => void,
  ) {
    for (let i = 0; i < runner.policy.concurrency; i++) this.loops.push(this.loop());
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      let m: JsMsg | null;
      try {
        m = await this.pullOne();
        failures = 0;
      } catch (err) {
        if (this.stopping || this.nc.isClosed()) break;
        // Reconnecting, or the server is restarting: keep trying; say so once per outage.
        if (failures === 0)
          console.warn(`[bus] ${this.runner.consumer}: pull failed, retrying: ${(err as Error).message}`);
        failures++;
        await sleep(Math.min(2_000, 100 * failures));
        continue;
      }
      if (m === null) continue;
      if (this.stopping) {
        m.nak();
        break;
      }
      let raw: ReturnType<NatsPullSubscription["toRaw"]>;
      try {
        raw = this.toRaw(m);
      } catch (err) {
        // Not a message of this bus's namespace: it can never be processed here, so it must not loop.
        console.error(
          `[bus] ${this.runner.consumer}: terminating unreadable #${m.seq}: ${(err as Error).message}`,
        );
        m.term();
        continue;
      }
      await Promise.race([this.runner.run(raw, this.ackOps(m)), this.abandoned]);
    }
  }

  private async pullOne(): Promise<JsMsg | null> {
    const iter = await this.consumer.fetch({ max_messages: 1, expires: this.expiresMs });
    this.pulls.add(iter);
    // `stop` may have run while the fetch was being set up, before the pull was in `pulls`.
    if (this.stopping) iter.stop();
    try {
      for await (const m of iter) return m;
      return null;
    } finally {
      this.pulls.delete(iter);
    }
  }

  private toRaw(m: JsMsg) {
    return {
      subject: this.subjects.toLogical(m.subject),
      data: m.data,
      headers: fromNatsHeaders(m.headers),
      seq: m.seq,
      deliveryCount: m.info.deliveryCount,
      time: m.time,
    };
  }

  private ackOps(m: JsMsg) {
    return {
      ack: async () => {
        if (await m.ackAck({ timeout: ACK_CONFIRM_MS }).catch(() => false)) return;
        if (await this.askAckAgain(m)) return;
        console.warn(`[bus] ${this.runner.consumer}: ack of #${m.seq} not confirmed; it may be redelivered`);
      },
      nak: (delayMs: number) => m.nak(delayMs),
      term: async () => {
        m.term();
        await this.nc.flush();
      },
      working: () => m.working(),
    };
  }

  /**
   * Sends an unconfirmed ack again until the server confirms it, for as long as the message's ack wait runs
   * (then it is redelivered anyway). An ack that a server received in its last moments, and died before
   * storing, is lost with it, and the message would come back after the restart; the ack subject names
   * the stream and delivery sequence, so the same ack is still valid on the restarted server.
   */
  private async askAckAgain(m: JsMsg): Promise<boolean> {
    // The ack subject is the delivery's reply subject, which nats.js's JsMsg has but does not declare.
    const reply = (m as JsMsg & { reply?: string }).reply;
    if (!reply) return false;
    const deadline = Date.now() + this.runner.policy.ackWaitMs;
    for (let attempt = 1; Date.now() < deadline && !this.nc.isClosed(); attempt++) {
      try {
        await this.nc.request(reply, ACK, { timeout: ACK_CONFIRM_MS });
        return true;
      } catch {
        // No server yet (restarting, reconnecting) or no answer: try again shortly.
        await sleep(Math.min(2_000, 200 * attempt));
      }
    }
    return false;
  }

  async stop(opts: StopOptions = {}): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      for (const p of this.pulls) p.stop();
      await this.runner.drain(opts.timeoutMs ?? 30_000);
      this.abandon();
      // A message a stopped pull still brings is nak'ed for another worker.
      await Promise.all(this.loops);
      this.onStopped(this);
      this.resolveClosed();
    }
    await this.closed;
  }
}
