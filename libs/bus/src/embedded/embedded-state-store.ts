import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { checkStateKey } from "../checks.js";
import { RevisionConflictError } from "../errors.js";
import type { StateChange, StateEntry, StateStore, StateWatch, WatchOptions } from "../types.js";
import { AppendLog, decodeRecord, encodeRecord } from "./append-log.js";

interface Watcher {
  prefix: string;
  push(c: StateChange): void;
  stop(): void;
}

/** Compact when the log holds this many more records than live keys. */
const COMPACT_SLACK = 1_000;

/**
 * Key-value state with NATS KV's semantics (bucket-wide increasing revisions, create-if-absent,
 * compare-and-set update and delete, prefix watch), kept in memory and in an append-only log
 * (records: P put, X delete, R revision counter kept through a compaction).
 */
export class EmbeddedStateStore implements StateStore {
  private readonly log: AppendLog;
  private readonly entries = new Map<string, StateEntry>();
  private revision = 0;
  private readonly watchers = new Set<Watcher>();

  constructor(
    dir: string,
    private readonly maxValueBytes: number,
  ) {
    mkdirSync(dir, { recursive: true });
    this.log = AppendLog.open(join(dir, "state.log"));
    for (const rec of this.log.initial) {
      const { type, meta, payload } = decodeRecord<{ key: string; rev: number }>(rec);
      this.revision = Math.max(this.revision, meta.rev);
      if (type === "P") this.entries.set(meta.key, { key: meta.key, value: payload, revision: meta.rev });
      else if (type === "X") this.entries.delete(meta.key);
    }
    if (this.log.initial.length > this.entries.size + COMPACT_SLACK) this.compact();
  }

  private compact(): void {
    const records = [encodeRecord("R", { key: "", rev: this.revision })];
    for (const e of this.entries.values())
      records.push(encodeRecord("P", { key: e.key, rev: e.revision }, e.value));
    this.log.rewrite(records);
  }

  private write(key: string, value: Uint8Array | undefined): number {
    const rev = this.revision + 1;
    if (value === undefined) {
      this.log.append(encodeRecord("X", { key, rev }));
      this.entries.delete(key);
    } else {
      if (value.length > this.maxValueBytes) {
        throw new Error(
          `state value for "${key}" is ${value.length} bytes, more than the limit ${this.maxValueBytes}`,
        );
      }
      const copy = new Uint8Array(value);
      this.log.append(encodeRecord("P", { key, rev }, copy));
      this.entries.set(key, { key, value: copy, revision: rev });
    }
    this.revision = rev;
    if (this.log.appended > this.entries.size + COMPACT_SLACK) this.compact();
    const change: StateChange = {
      key,
      op: value === undefined ? "delete" : "put",
      value: value === undefined ? new Uint8Array(0) : new Uint8Array(value),
      revision: rev,
    };
    for (const w of this.watchers) if (key.startsWith(w.prefix)) w.push(change);
    return rev;
  }

  async get(key: string): Promise<StateEntry | undefined> {
    checkStateKey(key);
    const e = this.entries.get(key);
    return e ? { key, value: new Uint8Array(e.value), revision: e.revision } : undefined;
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    checkStateKey(key);
    const e = this.entries.get(key);
    if (e) throw new RevisionConflictError(key, 0, e.revision);
    return this.write(key, value);
  }

  async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    checkStateKey(key);
    if (!Number.isInteger(expectedRevision) || expectedRevision < 1) {
      throw new Error(`update of "${key}": expectedRevision must be an integer ≥ 1, got ${expectedRevision}`);
    }
    const e = this.entries.get(key);
    if (!e || e.revision !== expectedRevision)
      throw new RevisionConflictError(key, expectedRevision, e?.revision);
    return this.write(key, value);
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    checkStateKey(key);
    return this.write(key, value);
  }

  async delete(key: string, expectedRevision?: number): Promise<void> {
    checkStateKey(key);
    const e = this.entries.get(key);
    if (expectedRevision !== undefined && e?.revision !== expectedRevision) {
      throw new RevisionConflictError(key, expectedRevision, e?.revision);
    }
    if (!e) return;
    this.write(key, undefined);
  }

  async keys(prefix = ""): Promise<string[]> {
    return [...this.entries.keys()].filter((k) => k.startsWith(prefix)).sort();
  }

  async watch(prefix = "", opts: WatchOptions = {}): Promise<StateWatch> {
    const queue: StateChange[] = [];
    let wakeUp: (() => void) | undefined;
    let stopped = false;
    const stop = () => {
      stopped = true;
      queue.length = 0;
      this.watchers.delete(watcher);
      wakeUp?.();
    };
    const watcher: Watcher = {
      prefix,
      push: (c) => {
        queue.push(c);
        wakeUp?.();
      },
      stop,
    };
    if (opts.includeExisting ?? true) {
      const existing = [...this.entries.values()].filter((e) => e.key.startsWith(prefix));
      existing.sort((a, b) => a.revision - b.revision);
      for (const e of existing)
        queue.push({ key: e.key, op: "put", value: new Uint8Array(e.value), revision: e.revision });
    }
    this.watchers.add(watcher);
    const iterator: AsyncIterator<StateChange> = {
      next: async () => {
        while (queue.length === 0 && !stopped) {
          await new Promise<void>((r) => {
            wakeUp = r;
          });
          wakeUp = undefined;
        }
        if (queue.length > 0) return { value: queue.shift()!, done: false };
        return { value: undefined, done: true };
      },
      return: async () => {
        stop();
        return { value: undefined, done: true };
      },
    };
    return { [Symbol.asyncIterator]: () => iterator, stop };
  }

  close(): void {
    for (const w of [...this.watchers]) w.stop();
    this.log.close();
  }
}
