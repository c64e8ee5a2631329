import type { CheckpointRef } from "@idpo/proto";

/** A loaded model with the checkpoint it came from. */
export interface LoadedModel<M> {
  /** The weights (e.g. a DiffusionModel). */
  model: M;
  /** The checkpoint they were loaded from. */
  ref: CheckpointRef;
}

/** A pin on one loaded model: the model stays alive until every lease on it is released. */
export interface ModelLease<M> extends LoadedModel<M> {
  /** Increases with every model installed in the slot; equal generations mean the same weights. */
  readonly generation: number;
  /** Unpins the model (idempotent). A replaced model is disposed when its last lease is released. */
  release(): void;
}

interface Entry<M> extends LoadedModel<M> {
  generation: number;
  leases: number;
  retired: boolean;
}

/**
 * Holds a service's current weights and swaps them atomically: a request takes a lease on the model
 * that is current when it starts and finishes on it, while requests that start after a swap get the
 * new one. A replaced model is disposed once its last lease is released. Loads run one at a time, in
 * the order they were asked for, so the last load asked for is the one that stays current.
 */
export class ModelSlot<M> {
  private entry: Entry<M> | undefined;
  private generations = 0;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;

  /**
   * @param dispose releases a model's memory (called once per model, after its last lease).
   * @param onInstall called after a model became current (e.g. to report health SERVING).
   */
  constructor(
    private readonly dispose: (model: M) => void,
    private readonly onInstall?: (ref: CheckpointRef) => void,
  ) {}

  /** The current checkpoint, or undefined while none is loaded. */
  get current(): CheckpointRef | undefined {
    return this.entry?.ref;
  }

  /** The current model, for read-only inspection (config); use `acquire` to run it. */
  get currentModel(): M | undefined {
    return this.entry?.model;
  }

  /** A lease on the current model, or undefined while none is loaded. */
  acquire(): ModelLease<M> | undefined {
    return this.entry ? this.lease(this.entry) : undefined;
  }

  /**
   * Makes checkpoint `id` current (loading it with `load` unless it already is) and returns a lease on
   * it. Concurrent calls are serialised; a call for the id that is current by then loads nothing.
   */
  loadAndAcquire(id: string, load: (id: string) => Promise<LoadedModel<M>>): Promise<ModelLease<M>> {
    const run = async (): Promise<ModelLease<M>> => {
      if (this.closed) throw new Error("model slot is closed");
      if (this.entry && this.entry.ref.id === id) return this.lease(this.entry);
      const loaded = await load(id);
      if (this.closed) {
        this.dispose(loaded.model);
        throw new Error("model slot is closed");
      }
      const entry = this.install(loaded);
      return this.lease(entry);
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Like `loadAndAcquire`, without keeping a lease: resolves to the checkpoint now current. */
  async load(id: string, load: (id: string) => Promise<LoadedModel<M>>): Promise<CheckpointRef> {
    const lease = await this.loadAndAcquire(id, load);
    lease.release();
    return lease.ref;
  }

  /** Stops accepting loads and disposes the current model once it is no longer leased. */
  close(): void {
    this.closed = true;
    const e = this.entry;
    this.entry = undefined;
    if (e) this.retire(e);
  }

  private install(loaded: LoadedModel<M>): Entry<M> {
    const entry: Entry<M> = { ...loaded, generation: ++this.generations, leases: 0, retired: false };
    const old = this.entry;
    this.entry = entry;
    if (old) this.retire(old);
    this.onInstall?.(entry.ref);
    return entry;
  }

  private retire(e: Entry<M>): void {
    e.retired = true;
    if (e.leases === 0) this.dispose(e.model);
  }

  private lease(e: Entry<M>): ModelLease<M> {
    e.leases++;
    let released = false;
    return {
      model: e.model,
      ref: e.ref,
      generation: e.generation,
      release: () => {
        if (released) return;
        released = true;
        e.leases--;
        if (e.leases === 0 && e.retired) this.dispose(e.model);
      },
    };
  }
}
