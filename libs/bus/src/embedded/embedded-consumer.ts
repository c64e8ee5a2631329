import { AppendLog, decodeRecord, encodeRecord } from "./append-log.js";
import type { EmbeddedStream, StoredMessage } from "./embedded-stream.js";

/** Something that takes deliveries from a consumer (one subscription / worker). */
export interface Receiver {
  /** How many more messages it can take now. */
  free(): number;
  /** Hand over one delivery; `token` identifies it for nak/working. */
  deliver(msg: StoredMessage, deliveryCount: number, token: number): void;
}

interface Pending {
  /** Deliveries so far. */
  count: number;
  /** Delivered and waiting for ack/nak/term until its deadline. */
  inFlight: boolean;
  /** When not in flight: earliest time (ms) it may be redelivered. */
  availableAt: number;
  /** Token of the current delivery. */
  token: number;
  timer?: NodeJS.Timeout;
}

/** Rewrite the consumer log when it has this many more records than there are pending messages. */
const COMPACT_RECORDS = 10_000;

/**
 * A durable consumer with JetStream's delivery semantics: each message goes to one receiver; unacked
 * deliveries are redelivered after ackWait, nak'ed ones after their delay; acked and terminated ones never
 * again. Its state (cursor, pending deliveries with their counts) is kept in an append-only log
 * (records: C config, k cursor, d delivered, a acked, t terminated).
 */
export class EmbeddedConsumer {
  private readonly pending = new Map<number, Pending>();
  private readonly receivers: Receiver[] = [];
  private rr = 0;
  private nextToken = 1;
  private wakeTimer?: NodeJS.Timeout;
  private wakeAt = Number.POSITIVE_INFINITY;
  private pumpQueued = false;
  private closed = false;

  private constructor(
    private readonly stream: EmbeddedStream,
    readonly name: string,
    private readonly log: AppendLog,
    readonly filter: string,
    private cursor: number,
    public ackWaitMs: number,
    private readonly startSeq: number,
  ) {}

  static create(
    stream: EmbeddedStream,
    name: string,
    path: string,
    filter: string,
    startSeq: number,
    ackWaitMs: number,
  ): EmbeddedConsumer {
    const log = AppendLog.open(path);
    log.append(encodeRecord("C", { filter, startSeq }));
    return new EmbeddedConsumer(stream, name, log, filter, startSeq, ackWaitMs, startSeq);
  }

  static load(stream: EmbeddedStream, name: string, path: string): EmbeddedConsumer {
    const log = AppendLog.open(path);
    let c: EmbeddedConsumer | undefined;
    for (const rec of log.initial) {
      const { type, meta } = decodeRecord<{ filter: string; startSeq: number; seq: number; n: number }>(rec);
      if (type === "C") {
        c = new EmbeddedConsumer(stream, name, log, meta.filter, meta.startSeq, 30_000, meta.startSeq);
        continue;
      }
      if (!c) throw new Error(`consumer log ${path} does not start with its configuration`);
      if (type === "k") c.cursor = Math.max(c.cursor, meta.seq);
      else if (type === "d") {
        c.cursor = Math.max(c.cursor, meta.seq + 1);
        c.pending.set(meta.seq, { count: meta.n, inFlight: false, availableAt: 0, token: 0 });
      } else if (type === "a" || type === "t") c.pending.delete(meta.seq);
    }
    if (!c) throw new Error(`consumer log ${path} is empty`);
    // Deliveries in flight when the process stopped are redelivered at once: their workers are gone.
    for (const seq of [...c.pending.keys()]) if (!stream.get(seq)) c.pending.delete(seq);
    return c;
  }

  attach(r: Receiver): void {
    this.receivers.push(r);
    this.notify();
  }

  detach(r: Receiver): void {
    const i = this.receivers.indexOf(r);
    if (i >= 0) this.receivers.splice(i, 1);
  }

  /** Messages delivered and not yet acked or terminated. */
  get pendingCount(): number {
    return this.pending.size;
  }

  /** Something may be deliverable: pump on the next microtask (never re-entrantly). */
  notify(): void {
    if (this.pumpQueued || this.closed) return;
    this.pumpQueued = true;
    queueMicrotask(() => {
      this.pumpQueued = false;
      this.safePump();
    });
  }

  private pickReceiver(): Receiver | undefined {
    for (let i = 0; i < this.receivers.length; i++) {
      const r = this.receivers[(this.rr + i) % this.receivers.length];
      if (r.free() > 0) {
        this.rr = (this.rr + i + 1) % this.receivers.length;
        return r;
      }
    }
    return undefined;
  }

  /** Pumping runs from timers and microtasks: a failure (e.g. a full disk) is logged, never thrown there. */
  private safePump(): void {
    try {
      this.pump();
    } catch (err) {
      console.error(`[bus] consumer ${this.name}: delivery stalled: ${(err as Error).message}`);
      this.wake(Date.now() + 1_000);
    }
  }

  private pump(): void {
    while (!this.closed) {
      const receiver = this.pickReceiver();
      if (!receiver) return;
      const now = Date.now();
      let seq: number | undefined;
      let soonest = Number.POSITIVE_INFINITY;
      for (const [s, p] of this.pending) {
        if (p.inFlight) continue;
        if (!this.stream.get(s)) {
          this.pending.delete(s);
          continue;
        }
        if (p.availableAt <= now) {
          if (seq === undefined || s < seq) seq = s;
        } else soonest = Math.min(soonest, p.availableAt);
      }
      if (seq === undefined) {
        const m = this.stream.nextMatching(this.cursor, this.filter);
        if (m) {
          seq = m.seq;
          this.cursor = m.seq + 1;
          this.pending.set(seq, { count: 0, inFlight: false, availableAt: 0, token: 0 });
        } else this.cursor = Math.max(this.cursor, this.stream.lastSeq + 1);
      }
      if (seq === undefined) {
        if (soonest < Number.POSITIVE_INFINITY) this.wake(soonest);
        return;
      }
      const msg = this.stream.get(seq)!;
      const p = this.pending.get(seq)!;
      p.count++;
      p.inFlight = true;
      p.token = this.nextToken++;
      p.timer = setTimeout(() => this.expire(seq), this.ackWaitMs);
      this.append("d", { seq, n: p.count });
      receiver.deliver(msg, p.count, p.token);
    }
  }

  private wake(at: number): void {
    if (this.wakeTimer && this.wakeAt <= at) return;
    clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(
      () => {
        this.wakeTimer = undefined;
        this.wakeAt = Number.POSITIVE_INFINITY;
        this.safePump();
      },
      Math.max(0, at - Date.now()),
    );
  }

  private expire(seq: number): void {
    const p = this.pending.get(seq);
    if (!p?.inFlight) return;
    p.inFlight = false;
    p.availableAt = 0;
    p.timer = undefined;
    this.notify();
  }

  private settle(seq: number, type: "a" | "t"): void {
    const p = this.pending.get(seq);
    if (!p) return;
    clearTimeout(p.timer);
    this.pending.delete(seq);
    this.append(type, { seq });
    if (this.stream.def.retention === "workqueue") this.stream.delete(seq);
  }

  /** Acknowledge: never deliver again (from any delivery of the message, as in JetStream). */
  ack(seq: number): void {
    this.settle(seq, "a");
  }

  /** Terminate: never deliver again. */
  term(seq: number): void {
    this.settle(seq, "t");
  }

  /** Redeliver after `delayMs` (ignored if this delivery is no longer the current one). */
  nak(seq: number, token: number, delayMs: number): void {
    const p = this.pending.get(seq);
    if (!p?.inFlight || p.token !== token) return;
    clearTimeout(p.timer);
    p.timer = undefined;
    p.inFlight = false;
    p.availableAt = Date.now() + delayMs;
    if (delayMs <= 0) this.notify();
    else this.wake(p.availableAt);
  }

  /** Restart the ack deadline of the current delivery. */
  working(seq: number, token: number): void {
    const p = this.pending.get(seq);
    if (!p?.inFlight || p.token !== token) return;
    clearTimeout(p.timer);
    p.timer = setTimeout(() => this.expire(seq), this.ackWaitMs);
  }

  private append(type: string, meta: object): void {
    this.log.append(encodeRecord(type, meta));
    if (this.log.appended > COMPACT_RECORDS + 4 * this.pending.size) this.compact();
  }

  private compact(): void {
    const records = [
      encodeRecord("C", { filter: this.filter, startSeq: this.startSeq }),
      encodeRecord("k", { seq: this.cursor }),
    ];
    for (const [seq, p] of this.pending)
      if (p.count > 0) records.push(encodeRecord("d", { seq, n: p.count }));
    this.log.rewrite(records);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.wakeTimer);
    for (const p of this.pending.values()) clearTimeout(p.timer);
    this.receivers.length = 0;
    this.log.close();
  }
}
