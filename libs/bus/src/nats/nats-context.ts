import {
  type ConsumerConfig,
  type ConsumerInfo,
  JetStreamApiError,
  type JetStreamClient,
  type JetStreamManager,
  type StreamConfig,
} from "@nats-io/jetstream";
import { type NatsConnection, headers as natsHeaders } from "@nats-io/transport-node";
import { BusConfigError } from "../errors.js";
import type { SubjectMapper } from "../subjects.js";
import type { Headers, PublishAck, Subscription } from "../types.js";
import type { BusDefinitions } from "./definitions.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Everything the NATS stores share: the connection, JetStream handles, definitions and open subscriptions. */
export class NatsContext {
  readonly subscriptions = new Set<Subscription>();

  constructor(
    readonly nc: NatsConnection,
    readonly js: JetStreamClient,
    readonly jsm: JetStreamManager,
    readonly defs: BusDefinitions,
    readonly subjects: SubjectMapper,
  ) {}

  /**
   * Publish to JetStream with a msgId. Publishes that fail for lack of a server (reconnecting, leader
   * election, a restarting server) are retried for up to `retryForMs`: the msgId makes the retry safe.
   */
  async publish(
    logicalSubject: string,
    data: Uint8Array,
    msgId: string,
    headers: Headers,
    retryForMs = 15_000,
  ): Promise<PublishAck> {
    const h = natsHeaders();
    for (const [k, v] of Object.entries(headers)) h.set(k, v);
    const subject = this.subjects.toPhysical(logicalSubject);
    const deadline = Date.now() + retryForMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const pa = await this.js.publish(subject, data, { msgID: msgId, headers: h, timeout: 3_000 });
        return { seq: pa.seq, duplicate: pa.duplicate };
      } catch (err) {
        if (err instanceof JetStreamApiError || this.nc.isClosed() || Date.now() > deadline) throw err;
        await sleep(Math.min(1_000, 50 * 2 ** attempt));
      }
    }
  }

  /** Create the stream, or bring an existing one to the definition; immutable differences are loud errors. */
  async ensureStream(cfg: Partial<StreamConfig> & { name: string }): Promise<void> {
    let existing: StreamConfig | undefined;
    try {
      existing = (await this.jsm.streams.info(cfg.name)).config;
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== 10059) throw err;
    }
    if (!existing) {
      try {
        await this.jsm.streams.add(cfg);
        return;
      } catch (err) {
        // Another process created it first: fall through to the comparison.
        existing = (await this.jsm.streams.info(cfg.name)).config;
        if (!existing) throw err;
      }
    }
    for (const k of ["retention", "storage"] as const) {
      if (existing[k] !== cfg[k]) {
        throw new BusConfigError(
          `stream ${cfg.name} exists with ${k}=${existing[k]} but the bus defines ${k}=${cfg[k]}; ` +
            `delete the stream or use another namePrefix`,
        );
      }
    }
    const changed = (["subjects", "max_age", "duplicate_window", "num_replicas"] as const).some(
      (k) => JSON.stringify(existing[k]) !== JSON.stringify(cfg[k]),
    );
    if (changed) await this.jsm.streams.update(cfg.name, { ...existing, ...cfg });
  }

  /** Create the durable consumer, or update its ack wait; a different filter is a loud error. */
  async ensureConsumer(
    stream: string,
    cfg: Partial<ConsumerConfig> & { durable_name: string },
  ): Promise<ConsumerInfo> {
    let info: ConsumerInfo | undefined;
    try {
      info = await this.jsm.consumers.info(stream, cfg.durable_name);
    } catch (err) {
      if (!(err instanceof JetStreamApiError) || err.code !== 10014) throw err;
    }
    if (!info) {
      try {
        return await this.jsm.consumers.add(stream, cfg);
      } catch (err) {
        info = await this.jsm.consumers.info(stream, cfg.durable_name).catch(() => undefined);
        if (!info) throw err;
      }
    }
    const have = info.config;
    if ((have.filter_subject ?? "") !== (cfg.filter_subject ?? "")) {
      throw new BusConfigError(
        `durable consumer ${cfg.durable_name} on ${stream} exists with filter "${have.filter_subject}", ` +
          `not "${cfg.filter_subject}": use another consumer name`,
      );
    }
    if (
      have.ack_wait !== cfg.ack_wait ||
      have.max_deliver !== cfg.max_deliver ||
      (have.inactive_threshold ?? 0) !== (cfg.inactive_threshold ?? 0)
    ) {
      info = await this.jsm.consumers.update(stream, cfg.durable_name, {
        ack_wait: cfg.ack_wait,
        max_deliver: cfg.max_deliver,
        max_ack_pending: cfg.max_ack_pending,
        ...(cfg.inactive_threshold !== undefined ? { inactive_threshold: cfg.inactive_threshold } : {}),
      });
    }
    return info;
  }
}
