import { checkEnqueue } from "../checks.js";
import { DeliveryRunner, resolvePolicy } from "../delivery.js";
import { withProducerSpan } from "../trace.js";
import type {
  ConsumeOptions,
  DeliveryHandler,
  PublishAck,
  PublishOptions,
  Subscription,
  WorkQueue,
} from "../types.js";
import { natsConsumerConfig } from "./definitions.js";
import type { NatsContext } from "./nats-context.js";
import { NatsPullSubscription } from "./pull-subscription.js";

/** The shard work queue: a work-queue-retention stream and one durable pull consumer shared by all workers. */
export class NatsWorkQueue implements WorkQueue {
  constructor(private readonly ctx: NatsContext) {}

  /** The durable consumer's config for an ack wait (created at connect with the definition's). */
  consumerConfig(ackWaitMs: number) {
    const { work, limits } = this.ctx.defs;
    return {
      ...natsConsumerConfig({
        durable: work.consumer,
        filter: this.ctx.subjects.toPhysical(work.subject),
        ackWaitMs,
        maxAckPending: -1,
        start: "all",
      }),
      durable_name: work.consumer,
      max_waiting: Math.max(512, limits.maxAckPending),
    };
  }

  async enqueue(data: Uint8Array, opts: PublishOptions): Promise<PublishAck> {
    checkEnqueue(data, opts);
    const { subject } = this.ctx.defs.work;
    return withProducerSpan(
      "enqueue",
      subject,
      opts.headers ?? {},
      (h) => this.ctx.publish(subject, data, opts.msgId, h),
      opts.msgId,
    );
  }

  async consume(handler: DeliveryHandler, opts: ConsumeOptions = {}): Promise<Subscription> {
    const { work, limits } = this.ctx.defs;
    const policy = resolvePolicy(opts, {
      maxDeliver: work.maxDeliver,
      ackWaitMs: work.ackWaitMs,
      backoffMs: limits.backoffMs,
      concurrency: 1,
    });
    // All workers share the consumer, so its ack wait is the last one asked for (normally the definition's).
    await this.ctx.ensureConsumer(work.stream.name, this.consumerConfig(policy.ackWaitMs));
    const consumer = await this.ctx.js.consumers.get(work.stream.name, work.consumer);
    const runner = new DeliveryRunner("work", work.consumer, policy, handler, (s, d, h, id) =>
      this.ctx.publish(s, d, id, h),
    );
    const sub = new NatsPullSubscription(
      this.ctx.nc,
      consumer,
      runner,
      this.ctx.subjects,
      limits.pullExpiresMs,
      (s) => this.ctx.subscriptions.delete(s),
    );
    this.ctx.subscriptions.add(sub);
    return sub;
  }

  async pending(): Promise<number> {
    const info = await this.ctx.jsm.streams.info(this.ctx.defs.work.stream.name);
    return info.state.messages;
  }
}
