import { hostname } from "node:os";
import { fromBinary, type MessageInitShape } from "@bufbuild/protobuf";
import {
  type Bus,
  MalformedMessageError,
  type PublishAck,
  publishRunEvent as publishOnLog,
  type RunEventCase,
  type Subscription,
} from "@idpo/bus";
import { type CheckpointPublished, type RunEvent, RunEventSchema } from "@idpo/proto";

/** The oneof case of a RunEvent payload, e.g. "pairsReady". */
export type RunEventKind = RunEventCase;

/**
 * Publishes a run event with Nats-Msg-Id = its event id (so a retried publish is stored once), on
 * `idpo.events.<runId>.<kind>`. `time` defaults to now. Returns the bus's acknowledgement.
 */
export function publishRunEvent(
  bus: Pick<Bus, "events">,
  init: MessageInitShape<typeof RunEventSchema>,
): Promise<PublishAck> {
  return publishOnLog(bus.events, init);
}

/** Decodes a delivered run event; undecodable bytes or a payload other than `kind` are malformed. */
export function decodeRunEvent<K extends RunEventKind>(
  data: Uint8Array,
  kind: K,
): RunEvent & { payload: Extract<RunEvent["payload"], { case: K }> } {
  let ev: RunEvent;
  try {
    ev = fromBinary(RunEventSchema, data);
  } catch (e) {
    throw new MalformedMessageError(`undecodable RunEvent: ${(e as Error).message}`);
  }
  if (ev.payload.case !== kind) {
    throw new MalformedMessageError(
      `RunEvent ${ev.eventId}: expected a ${kind} payload, got ${ev.payload.case ?? "none"}`,
    );
  }
  return ev as RunEvent & { payload: Extract<RunEvent["payload"], { case: K }> };
}

/**
 * A durable consumer name unique to this process, for subscriptions every replica must see in full
 * (e.g. "improver-host-1-4242"). Characters outside [A-Za-z0-9_-] become "-".
 */
export function replicaConsumerName(service: string): string {
  return `${service}-${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, "-");
}

/** Options of {@link subscribeCheckpointPublished}. */
export interface CheckpointSubscriptionOptions {
  /** Durable consumer name (see replicaConsumerName). */
  consumer: string;
  /** Called for every decodable checkpoint.published event of any run; throw to have it redelivered. */
  onCheckpoint: (published: CheckpointPublished, event: RunEvent) => Promise<void> | void;
}

/**
 * Subscribes to `idpo.events.*.checkpoint_published` from now on ("new"). Events that do not decode,
 * or carry no checkpoint id, are terminated and reported (MalformedMessageError) without reaching
 * the handler.
 */
export function subscribeCheckpointPublished(
  bus: Pick<Bus, "events">,
  opts: CheckpointSubscriptionOptions,
): Promise<Subscription> {
  return bus.events.subscribe(
    { consumer: opts.consumer, filter: "idpo.events.*.checkpoint_published", start: "new" },
    async (msg) => {
      const ev = decodeRunEvent(msg.data, "checkpointPublished");
      const published = ev.payload.value;
      if (!published.checkpoint?.id) {
        throw new MalformedMessageError(
          `RunEvent ${ev.eventId}: checkpoint_published without a checkpoint id`,
        );
      }
      await opts.onCheckpoint(published, ev);
    },
  );
}
