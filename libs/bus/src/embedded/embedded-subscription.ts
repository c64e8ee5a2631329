import type { DeliveryRunner } from "../delivery.js";
import type { StopOptions, Subscription } from "../types.js";
import type { EmbeddedConsumer, Receiver } from "./embedded-consumer.js";
import type { StoredMessage } from "./embedded-stream.js";

/** One subscription (worker) attached to an embedded consumer, running up to `concurrency` handlers. */
export class EmbeddedSubscription implements Subscription, Receiver {
  private active = 0;
  private stopping = false;
  private resolveClosed!: () => void;
  readonly closed = new Promise<void>((r) => {
    this.resolveClosed = r;
  });

  constructor(
    private readonly consumer: EmbeddedConsumer,
    private readonly runner: DeliveryRunner,
    private readonly onStopped: (s: EmbeddedSubscription) => void,
  ) {
    consumer.attach(this);
  }

  free(): number {
    return this.stopping ? 0 : this.runner.policy.concurrency - this.active;
  }

  deliver(msg: StoredMessage, deliveryCount: number, token: number): void {
    this.active++;
    const { consumer } = this;
    const raw = {
      subject: msg.subject,
      // A copy, so that a handler mutating its bytes cannot change the stored message.
      data: new Uint8Array(msg.data),
      headers: { ...msg.headers },
      seq: msg.seq,
      deliveryCount,
      time: new Date(msg.time),
    };
    void this.runner
      .run(raw, {
        ack: async () => consumer.ack(msg.seq),
        nak: (delayMs) => consumer.nak(msg.seq, token, delayMs),
        term: async () => consumer.term(msg.seq),
        working: () => consumer.working(msg.seq, token),
      })
      .finally(() => {
        this.active--;
        consumer.notify();
      });
  }

  async stop(opts: StopOptions = {}): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      this.consumer.detach(this);
      await this.runner.drain(opts.timeoutMs ?? 30_000);
      this.onStopped(this);
      this.resolveClosed();
    }
    await this.closed;
  }
}
