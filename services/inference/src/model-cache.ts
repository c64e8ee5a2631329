import { Code, ConnectError } from "@connectrpc/connect";
import { decodeCheckpointWeights } from "@idpo/diffusion";
import { type CheckpointStore, checkpointRef, fetchCheckpoint, unreadableCheckpoint } from "@idpo/mesh";
import type { CheckpointRef } from "@idpo/proto";
import { buildModelGraphs, OrtDiffusionModel, type OrtOptions } from "./ort-model.js";

/** A pin on a cached model: it stays open until every lease on it is released. */
export interface ServedLease {
  /** The model's sessions. */
  model: OrtDiffusionModel;
  /** The checkpoint the caller asked for (several ids may share one entry: same weights). */
  ref: CheckpointRef;
  /** Lowercase hex SHA-256 of the weights: the cache key. */
  hash: string;
  /** Unpins (idempotent). */
  release(): void;
}

interface Entry {
  hash: string;
  model: OrtDiffusionModel;
  leases: number;
  lastUsed: number;
  evicted: boolean;
}

/** Counters for tests and DescribeModel. */
export interface CacheStats {
  /** Graphs built and sessions opened (cache misses). */
  builds: number;
  /** Requests served from an entry already open. */
  hits: number;
}

/**
 * The sidecar's models, keyed by the content hash of their weights: a checkpoint id that was published
 * again with the same weights, or two ids with the same weights, share one pair of graphs and sessions.
 * Holds at most `capacity` entries; the least recently used one that is not current is evicted, and its
 * sessions are released once the calls running on it (leases) finish, so a hot swap drops nothing.
 */
export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  private readonly building = new Map<string, Promise<Entry>>();
  private readonly refs = new Map<string, CheckpointRef>();
  private currentId: string | undefined;
  private closed = false;
  private clock = 0;
  readonly stats: CacheStats = { builds: 0, hits: 0 };

  constructor(
    private readonly store: CheckpointStore,
    private readonly options: OrtOptions,
    private readonly capacity: number,
  ) {}

  /** The current checkpoint (the one calls without a checkpoint id use). */
  get current(): CheckpointRef | undefined {
    return this.currentId === undefined ? undefined : this.refs.get(this.currentId);
  }

  /** Checkpoints whose graphs are open, most recently used first. */
  cachedRefs(): CheckpointRef[] {
    const open = new Set([...this.entries.values()].filter((e) => !e.evicted).map((e) => e.hash));
    return [...this.refs.values()].filter((r) => open.has(r.sha256));
  }

  /**
   * A lease on checkpoint `id` (its current weights in the store), building its graphs on a miss.
   * With `makeCurrent` it also becomes the current checkpoint.
   */
  async lease(id: string, makeCurrent = false): Promise<ServedLease & { cached: boolean }> {
    if (this.closed) throw new ConnectError("the inference server is shutting down", Code.Unavailable);
    // The reference alone (no file read) decides a hit; the bytes are read only to build.
    let stored = await checkpointRef(this.store, id);
    let entry = stored.sha256 ? this.entries.get(stored.sha256) : undefined;
    const cached = entry !== undefined;
    if (!entry) {
      const got = await fetchCheckpoint(this.store, id);
      stored = got.ref;
      entry = await this.build(id, got.bytes, stored.sha256);
    } else this.stats.hits++;
    const ref = { ...stored, sha256: entry.hash };
    this.refs.set(id, ref);
    if (makeCurrent || this.currentId === undefined) this.currentId = id;
    const lease = this.pin(entry, ref);
    this.evict();
    return { ...lease, cached };
  }

  /** A lease on the current checkpoint, or undefined while none is loaded. */
  leaseCurrent(): ServedLease | undefined {
    const ref = this.current;
    const entry = ref ? this.entries.get(ref.sha256) : undefined;
    return entry && ref ? this.pin(entry, ref) : undefined;
  }

  /** Stops building; releases every entry once its leases are released. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled(this.building.values());
    for (const e of this.entries.values()) this.retire(e);
    this.entries.clear();
  }

  private async build(id: string, bytes: Uint8Array, refHash: string): Promise<Entry> {
    let weights: ReturnType<typeof decodeCheckpointWeights>;
    try {
      weights = decodeCheckpointWeights(bytes);
    } catch (e) {
      throw unreadableCheckpoint(id, e);
    }
    const hash = weights.metadata.contentHash.replace(/^sha256:/, "");
    if (refHash && refHash !== hash) {
      throw new ConnectError(
        `checkpoint ${JSON.stringify(id)}: the store records sha256 ${refHash}, the file holds ${hash}`,
        Code.DataLoss,
      );
    }
    const existing = this.entries.get(hash);
    if (existing) return existing;
    let pending = this.building.get(hash);
    if (!pending) {
      pending = (async () => {
        const model = await OrtDiffusionModel.open(
          buildModelGraphs(weights.metadata.config, weights.weights),
          this.options,
        );
        this.stats.builds++;
        const entry: Entry = { hash, model, leases: 0, lastUsed: 0, evicted: false };
        if (this.closed) {
          await model.release();
          throw new ConnectError("the inference server is shutting down", Code.Unavailable);
        }
        this.entries.set(hash, entry);
        return entry;
      })().finally(() => this.building.delete(hash));
      this.building.set(hash, pending);
    }
    return pending;
  }

  private pin(e: Entry, ref: CheckpointRef): ServedLease {
    e.leases++;
    e.lastUsed = ++this.clock;
    let released = false;
    return {
      model: e.model,
      ref,
      hash: e.hash,
      release: () => {
        if (released) return;
        released = true;
        e.leases--;
        if (e.leases === 0 && e.evicted) void e.model.release();
      },
    };
  }

  private evict(): void {
    const currentHash = this.current?.sha256;
    const live = [...this.entries.values()].sort((a, b) => a.lastUsed - b.lastUsed);
    let excess = live.length - this.capacity;
    for (const e of live) {
      if (excess <= 0) break;
      if (e.hash === currentHash) continue;
      this.entries.delete(e.hash);
      this.retire(e);
      excess--;
    }
    for (const [id, ref] of this.refs)
      if (!this.entries.has(ref.sha256) && id !== this.currentId) this.refs.delete(id);
  }

  private retire(e: Entry): void {
    e.evicted = true;
    if (e.leases === 0) void e.model.release();
  }
}
