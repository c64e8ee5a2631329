import { hostname } from "node:os";
import { type Bus, MalformedMessageError, type Subscription, subscribeRunEvents } from "@idpo/bus";
import type { CheckpointPublished, RunEvent } from "@idpo/proto";

/**
 * A durable consumer name unique to this process, for subscriptions every replica must see in full
 * (e.g. "improver-host-1-4242"). Characters outside [A-Za-z0-9_-] become "-".
 */
export function replicaConsumerName(service: string): string {
  return `${service}-${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, "-");
}

/**
 * How long a replica's checkpoint consumer outlives the replica: a replica restarted within it resumes the
 * consumer; after it NATS deletes the consumer, so replicas that are gone leave nothing behind.
 */
export const REPLICA_CONSUMER_IDLE_MS = 15 * 60_000;

/** Options of {@link subscribeCheckpointPublished}. */
export interface CheckpointSubscriptionOptions {
  /** Durable consumer name (see replicaConsumerName). */
  consumer: string;
  /** Called for every decodable checkpoint.published event of any run; throw to have it redelivered. */
  onCheckpoint: (published: CheckpointPublished, event: RunEvent) => Promise<void> | void;
}

/**
 * Subscribes to `idpo.events.*.checkpoint_published` from now on ("new"). Events that the bus's RunEvent
 * codec rejects, or that carry no checkpoint id, are terminated and reported (MalformedMessageError)
 * without reaching the handler.
 */
export function subscribeCheckpointPublished(
  bus: Pick<Bus, "events">,
  opts: CheckpointSubscriptionOptions,
): Promise<Subscription> {
  return subscribeRunEvents(
    bus.events,
    {
      consumer: opts.consumer,
      payload: "checkpointPublished",
      start: "new",
      idleExpiryMs: REPLICA_CONSUMER_IDLE_MS,
    },
    async (ev) => {
      if (ev.payload.case !== "checkpointPublished" || !ev.payload.value.checkpoint?.id) {
        throw new MalformedMessageError(
          `RunEvent ${ev.eventId}: checkpoint_published without a checkpoint id`,
        );
      }
      await opts.onCheckpoint(ev.payload.value, ev);
    },
  );
}
