import { JetStreamApiError } from "@nats-io/jetstream";
import { type KV, KvWatchInclude } from "@nats-io/kv";
import { checkStateKey } from "../checks.js";
import { RevisionConflictError } from "../errors.js";
import type { StateChange, StateEntry, StateStore, StateWatch, WatchOptions } from "../types.js";

const WRONG_LAST_SEQUENCE = 10071;

/** The `actual` revision named in "wrong last sequence: N", when the server says it. */
function actualFrom(err: JetStreamApiError): number | undefined {
  const m = /wrong last sequence: (\d+)/.exec(err.message);
  return m ? Number(m[1]) : undefined;
}

/** A NATS KV filter covering every key with `prefix`: exact when the prefix ends at a token boundary. */
function kvFilter(prefix: string): string {
  if (prefix === "") return ">";
  if (prefix.endsWith(".")) return `${prefix}>`;
  const lastDot = prefix.lastIndexOf(".");
  return lastDot < 0 ? ">" : `${prefix.slice(0, lastDot + 1)}>`;
}

/** Run state in a NATS KV bucket; revisions are the bucket stream's sequences. */
export class NatsStateStore implements StateStore {
  constructor(private readonly kv: KV) {}

  async get(key: string): Promise<StateEntry | undefined> {
    checkStateKey(key);
    const e = await this.kv.get(key);
    if (e?.operation !== "PUT") return undefined;
    return { key, value: e.value, revision: e.revision };
  }

  async create(key: string, value: Uint8Array): Promise<number> {
    checkStateKey(key);
    try {
      return await this.kv.create(key, value);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        throw new RevisionConflictError(key, 0, actualFrom(err));
      }
      throw err;
    }
  }

  async update(key: string, value: Uint8Array, expectedRevision: number): Promise<number> {
    checkStateKey(key);
    if (!Number.isInteger(expectedRevision) || expectedRevision < 1) {
      throw new Error(`update of "${key}": expectedRevision must be an integer ≥ 1, got ${expectedRevision}`);
    }
    try {
      return await this.kv.update(key, value, expectedRevision);
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        throw new RevisionConflictError(key, expectedRevision, actualFrom(err));
      }
      throw err;
    }
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    checkStateKey(key);
    return this.kv.put(key, value);
  }

  async delete(key: string, expectedRevision?: number): Promise<void> {
    checkStateKey(key);
    if (expectedRevision === undefined) {
      if ((await this.get(key)) === undefined) return;
      await this.kv.delete(key);
      return;
    }
    try {
      await this.kv.delete(key, { previousSeq: expectedRevision });
    } catch (err) {
      if (err instanceof JetStreamApiError && err.code === WRONG_LAST_SEQUENCE) {
        throw new RevisionConflictError(key, expectedRevision, actualFrom(err));
      }
      throw err;
    }
  }

  async keys(prefix = ""): Promise<string[]> {
    const out: string[] = [];
    const iter = await this.kv.keys(kvFilter(prefix));
    for await (const k of iter) if (k.startsWith(prefix)) out.push(k);
    return out.sort();
  }

  async watch(prefix = "", opts: WatchOptions = {}): Promise<StateWatch> {
    const includeExisting = opts.includeExisting ?? true;
    const iter = await this.kv.watch({
      key: kvFilter(prefix),
      include: includeExisting ? KvWatchInclude.LastValue : KvWatchInclude.UpdatesOnly,
    });
    async function* changes(): AsyncGenerator<StateChange> {
      for await (const e of iter) {
        if (!e.key.startsWith(prefix)) continue;
        const op = e.operation === "PUT" ? "put" : "delete";
        // The initial snapshot lists existing keys only; a delete marker there is a key that no longer exists.
        if (op === "delete" && !e.isUpdate) continue;
        yield { key: e.key, op, value: op === "put" ? e.value : new Uint8Array(0), revision: e.revision };
      }
    }
    const gen = changes();
    return {
      [Symbol.asyncIterator]: () => gen,
      stop: () => {
        iter.stop();
        void gen.return(undefined);
      },
    };
  }
}
