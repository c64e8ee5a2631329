import { mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { StreamDefinition } from "../nats/definitions.js";
import { subjectMatches } from "../subjects.js";
import type { Headers, PublishAck, StartPosition } from "../types.js";
import { AppendLog, decodeRecord, encodeRecord } from "./append-log.js";
import { EmbeddedConsumer } from "./embedded-consumer.js";

/** A stored message. */
export interface StoredMessage {
  seq: number;
  subject: string;
  headers: Headers;
  data: Uint8Array;
  /** Store time, ms since the epoch. */
  time: number;
  msgId: string;
}

interface MsgMeta {
  seq: number;
  subject: string;
  headers: Headers;
  time: number;
  msgId: string;
}

/** Rewrite the log when at least this many records are dead and they outnumber the live ones. */
const COMPACT_MIN_DEAD = 1_000;

/**
 * An in-process stream with JetStream's semantics: sequences, msgId de-duplication within a window,
 * limits or work-queue retention, durable consumers. Messages are kept in memory and in an append-only
 * log (records: M message, X deleted, D de-duplication entry kept through a compaction).
 */
export class EmbeddedStream {
  private readonly log: AppendLog;
  private readonly messages = new Map<number, StoredMessage>();
  /** Sequences in order; deleted ones stay until compaction and are skipped. */
  private seqs: number[] = [];
  private readonly dedup = new Map<string, { seq: number; time: number }>();
  private dead = 0;
  lastSeq = 0;
  readonly consumers = new Map<string, EmbeddedConsumer>();

  constructor(
    readonly def: StreamDefinition,
    private readonly dir: string,
  ) {
    mkdirSync(join(dir, "consumers"), { recursive: true });
    this.log = AppendLog.open(join(dir, "messages.log"));
    const cutoff = def.maxAgeMs > 0 ? Date.now() - def.maxAgeMs : 0;
    for (const rec of this.log.initial) {
      const { type, meta, payload } = decodeRecord<MsgMeta>(rec);
      if (type === "M") {
        this.lastSeq = Math.max(this.lastSeq, meta.seq);
        if (meta.msgId) this.dedup.set(meta.msgId, { seq: meta.seq, time: meta.time });
        if (meta.time < cutoff) {
          this.dead++;
          continue;
        }
        this.messages.set(meta.seq, { ...meta, data: payload });
        this.seqs.push(meta.seq);
      } else if (type === "X") {
        if (this.messages.delete(meta.seq)) this.dead++;
      } else if (type === "D") {
        this.lastSeq = Math.max(this.lastSeq, meta.seq);
        if (meta.msgId) this.dedup.set(meta.msgId, { seq: meta.seq, time: meta.time });
      }
    }
    this.pruneDedup(Date.now());
    for (const f of readdirSync(join(dir, "consumers"))) {
      if (!f.endsWith(".log")) continue;
      const name = f.slice(0, -4);
      this.consumers.set(name, EmbeddedConsumer.load(this, name, join(dir, "consumers", f)));
    }
  }

  private pruneDedup(now: number): void {
    const cutoff = now - this.def.duplicateWindowMs;
    for (const [id, e] of this.dedup) {
      if (e.time >= cutoff) break;
      this.dedup.delete(id);
    }
  }

  /** Store a message unless its msgId is a duplicate inside the window. */
  publish(subject: string, data: Uint8Array, headers: Headers, msgId: string): PublishAck {
    const now = Date.now();
    this.pruneDedup(now);
    if (msgId) {
      const seen = this.dedup.get(msgId);
      if (seen) return { seq: seen.seq, duplicate: true };
    }
    const seq = this.lastSeq + 1;
    const meta: MsgMeta = { seq, subject, headers, time: now, msgId };
    this.log.append(encodeRecord("M", meta, data));
    this.lastSeq = seq;
    this.messages.set(seq, { ...meta, data: new Uint8Array(data) });
    this.seqs.push(seq);
    if (msgId) this.dedup.set(msgId, { seq, time: now });
    for (const c of this.consumers.values()) c.notify();
    return { seq, duplicate: false };
  }

  get(seq: number): StoredMessage | undefined {
    return this.messages.get(seq);
  }

  /** Messages stored now (not deleted). */
  get size(): number {
    return this.messages.size;
  }

  /** First stored message with seq ≥ `from` whose subject matches `filter`. */
  nextMatching(from: number, filter: string): StoredMessage | undefined {
    let lo = 0;
    let hi = this.seqs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.seqs[mid] < from) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < this.seqs.length; i++) {
      const m = this.messages.get(this.seqs[i]);
      if (m && subjectMatches(filter, m.subject)) return m;
    }
    return undefined;
  }

  /** The consumer's first sequence for a start position. */
  startSeq(start: StartPosition, filter: string): number {
    if (start === "all") return 1;
    if (start === "new") return this.lastSeq + 1;
    if (start === "last") {
      for (let i = this.seqs.length - 1; i >= 0; i--) {
        const m = this.messages.get(this.seqs[i]);
        if (m && subjectMatches(filter, m.subject)) return m.seq;
      }
      return this.lastSeq + 1;
    }
    if ("seq" in start) return start.seq;
    const t = start.time.getTime();
    for (const s of this.seqs) {
      const m = this.messages.get(s);
      if (m && m.time >= t) return s;
    }
    return this.lastSeq + 1;
  }

  /** Remove a message (work-queue retention: acked or terminated). */
  delete(seq: number): void {
    if (!this.messages.delete(seq)) return;
    this.log.append(encodeRecord("X", { seq }));
    this.dead++;
    if (this.dead >= COMPACT_MIN_DEAD && this.dead > this.messages.size) this.compact();
  }

  /** Rewrite the log with live messages and the de-duplication entries still inside the window. */
  private compact(): void {
    const now = Date.now();
    this.pruneDedup(now);
    this.seqs = this.seqs.filter((s) => this.messages.has(s));
    const records: Uint8Array[] = [];
    const live = new Set<string>();
    for (const s of this.seqs) {
      const m = this.messages.get(s)!;
      if (m.msgId) live.add(m.msgId);
      const { data, ...meta } = m;
      records.push(encodeRecord("M", meta, data));
    }
    for (const [msgId, e] of this.dedup) {
      if (!live.has(msgId)) records.push(encodeRecord("D", { msgId, seq: e.seq, time: e.time }));
    }
    // Keeps lastSeq even when every message is gone, so sequences never repeat.
    records.push(encodeRecord("D", { msgId: "", seq: this.lastSeq, time: 0 }));
    this.log.rewrite(records);
    this.dead = 0;
  }

  /** The durable consumer `name`, created with `filter`/`start` if new. */
  consumer(name: string, filter: string, start: StartPosition, ackWaitMs: number): EmbeddedConsumer {
    let c = this.consumers.get(name);
    if (c) {
      if (c.filter !== filter) {
        throw new Error(
          `durable consumer ${name} on ${this.def.name} exists with filter "${c.filter}", not "${filter}": ` +
            "use another consumer name",
        );
      }
      c.ackWaitMs = ackWaitMs;
      return c;
    }
    c = EmbeddedConsumer.create(
      this,
      name,
      join(this.dir, "consumers", `${name}.log`),
      filter,
      this.startSeq(start, filter),
      ackWaitMs,
    );
    this.consumers.set(name, c);
    return c;
  }

  close(): void {
    for (const c of this.consumers.values()) c.close();
    this.log.close();
  }
}
