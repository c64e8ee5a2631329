import { checkEventPublish, checkSubscribe } from "../checks.js";
import { DeliveryRunner, resolvePolicy } from "../delivery.js";
import { withProducerSpan } from "../trace.js";
import type {
  DeliveryHandler,
  EventLog,
  PublishAck,
  PublishOptions,
  SubscribeOptions,
  Subscription,
} from "../types.js";
import { natsConsumerConfig } from "./definitions.js";
import type { NatsContext } from "./nats-context.js";
import { NatsPullSubscription } from "./pull-subscription.js";

/** The run-event log on a JetStream stream with durable pull consumers. */
export class NatsEventLog implements EventLog {
  constructor(private readonly ctx: NatsContext) {}

  async publish(subject: string, data: Uint8Array, opts: PublishOptions): Promise<PublishAck> {
    checkEventPublish(subject, data, opts);
    return withProducerSpan(
      "publish",
      subject,
      opts.headers ?? {},
      (h) => this.ctx.publish(subject, data, opts.msgId, h),
      opts.msgId,
    );
  }

  async subscribe(opts: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    const { filter, stream } = checkSubscribe(opts);
    const { defs, subjects } = this.ctx;
    const policy = resolvePolicy(opts, {
      maxDeliver: defs.limits.eventsMaxDeliver,
      ackWaitMs: defs.limits.eventsAckWaitMs,
      backoffMs: defs.limits.backoffMs,
      concurrency: 1,
    });
    const streamName = stream === "events" ? defs.events.name : defs.reports.name;
    await this.ctx.ensureConsumer(
      streamName,
      natsConsumerConfig({
        durable: opts.consumer,
        filter: subjects.toPhysical(filter),
        ackWaitMs: policy.ackWaitMs,
        maxAckPending: defs.limits.maxAckPending,
        start: opts.start ?? "all",
        idleExpiryMs: opts.idleExpiryMs,
      }) as ReturnType<typeof natsConsumerConfig> & { durable_name: string },
    );
    const consumer = await this.ctx.js.consumers.get(streamName, opts.consumer);
    const runner = new DeliveryRunner("events", opts.consumer, policy, handler, (s, d, h, id) =>
      this.ctx.publish(s, d, id, h),
    );
    const sub = new NatsPullSubscription(
      this.ctx.nc,
      consumer,
      runner,
      subjects,
      defs.limits.pullExpiresMs,
      (s) => this.ctx.subscriptions.delete(s),
    );
    this.ctx.subscriptions.add(sub);
    return sub;
  }

  async lastSeq(): Promise<number> {
    const info = await this.ctx.jsm.streams.info(this.ctx.defs.events.name);
    return info.state.last_seq;
  }
}
