import { Code, ConnectError } from "@connectrpc/connect";

/** Limits of a {@link DynamicBatcher}. */
export interface BatcherLimits {
  /** Most items run together in one batch (≥ 1). */
  maxBatch: number;
  /** Longest an item waits for company before its batch runs anyway, ms (≥ 0). */
  maxDelayMs: number;
  /** Most items waiting (not yet running); a submit that would exceed it fails RESOURCE_EXHAUSTED. */
  maxQueue: number;
}

/** What a batch run gets: the group shared by its items, and the items in queue order. */
export type BatchRunner<G, I, O> = (group: G, items: I[]) => Promise<O[]>;

interface Request<G, I, O> {
  key: string;
  group: G;
  items: I[];
  results: O[];
  /** Items not yet finished. */
  remaining: number;
  /** Items not yet taken into a batch. */
  waiting: number;
  /** Items in the running batch. */
  inFlight: number;
  /** Set when the request was aborted while some of its items were running: it fails once they return. */
  abortedWith?: unknown;
  enqueuedAt: number;
  done: boolean;
  resolve(out: O[]): void;
  reject(err: unknown): void;
  cleanup(): void;
}

interface Slot<G, I, O> {
  req: Request<G, I, O>;
  index: number;
}

/** Counters for tests and metrics. */
export interface BatcherStats {
  /** Batches run. */
  batches: number;
  /** Items run (summed over batches). */
  items: number;
  /** Largest batch run. */
  largestBatch: number;
  /** Requests refused because the queue was full. */
  rejectedFull: number;
  /** Requests dropped because their deadline passed (or they were cancelled) while queued. */
  droppedExpired: number;
}

/**
 * Dynamic batching: concurrent requests of items are queued per key (items with different keys never
 * share a batch) and run in batches of up to `maxBatch` items, as soon as a key has a full batch or its
 * oldest item has waited `maxDelayMs`. One batch runs at a time, oldest key first. A request's items
 * may be split over several batches; it resolves when all are done, with its results in order.
 * A request whose signal aborts while queued is dropped (its queued items never run).
 */
export class DynamicBatcher<G, I, O> {
  private readonly queues = new Map<string, Slot<G, I, O>[]>();
  private queued = 0;
  private running = false;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private idleWaiters: (() => void)[] = [];
  /** Counters since creation. */
  readonly stats: BatcherStats = {
    batches: 0,
    items: 0,
    largestBatch: 0,
    rejectedFull: 0,
    droppedExpired: 0,
  };

  constructor(
    private readonly limits: BatcherLimits,
    private readonly run: BatchRunner<G, I, O>,
    private readonly describeFull: (queued: number, limit: number) => string = (q, l) =>
      `queue is full: ${q} items waiting, limit ${l}`,
  ) {
    if (!Number.isInteger(limits.maxBatch) || limits.maxBatch < 1)
      throw new Error(`maxBatch must be ≥ 1, got ${limits.maxBatch}`);
    if (!(limits.maxDelayMs >= 0)) throw new Error(`maxDelayMs must be ≥ 0, got ${limits.maxDelayMs}`);
    if (!Number.isInteger(limits.maxQueue) || limits.maxQueue < 1)
      throw new Error(`maxQueue must be ≥ 1, got ${limits.maxQueue}`);
  }

  /** Items waiting (not yet running). */
  get queueLength(): number {
    return this.queued;
  }

  /**
   * Queues `items` under `key` (same key ⇒ same `group`) and resolves with one output per item.
   * Rejects with RESOURCE_EXHAUSTED when the queue cannot take them, with the signal's reason when it
   * aborts before the items are done, and with the runner's error when their batch fails.
   */
  submit(key: string, group: G, items: I[], signal?: AbortSignal): Promise<O[]> {
    if (this.closed)
      return Promise.reject(new ConnectError("the batcher is shutting down", Code.Unavailable));
    if (items.length === 0) return Promise.resolve([]);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    if (this.queued + items.length > this.limits.maxQueue) {
      this.stats.rejectedFull++;
      return Promise.reject(
        new ConnectError(this.describeFull(this.queued, this.limits.maxQueue), Code.ResourceExhausted),
      );
    }
    return new Promise<O[]>((resolve, reject) => {
      const onAbort = () => {
        if (req.done || req.abortedWith !== undefined) return;
        this.stats.droppedExpired++;
        // Items already running finish first: the caller's resources (e.g. a model lease) must outlive them.
        if (req.inFlight > 0) {
          req.abortedWith = abortError(signal!);
          this.dropWaiting(req);
        } else this.finish(req, abortError(signal!));
      };
      const req: Request<G, I, O> = {
        key,
        group,
        items,
        results: new Array<O>(items.length),
        remaining: items.length,
        waiting: items.length,
        inFlight: 0,
        enqueuedAt: Date.now(),
        done: false,
        resolve,
        reject,
        cleanup: () => signal?.removeEventListener("abort", onAbort),
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      let q = this.queues.get(key);
      if (!q) {
        q = [];
        this.queues.set(key, q);
      }
      for (let i = 0; i < items.length; i++) q.push({ req, index: i });
      this.queued += items.length;
      this.pump();
    });
  }

  /** Resolves when nothing is queued or running. */
  idle(): Promise<void> {
    if (!this.running && this.queued === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** Fails every queued request with UNAVAILABLE; the running batch finishes. */
  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    const err = new ConnectError("the service is shutting down", Code.Unavailable);
    const reqs = new Set<Request<G, I, O>>();
    for (const q of this.queues.values()) for (const s of q) reqs.add(s.req);
    for (const req of reqs) {
      if (req.done) continue;
      if (req.inFlight > 0) {
        req.abortedWith = err;
        this.dropWaiting(req);
      } else this.finish(req, err);
    }
  }

  private finish(req: Request<G, I, O>, err?: unknown): void {
    if (req.done) return;
    req.done = true;
    req.cleanup();
    this.dropWaiting(req);
    if (err !== undefined) req.reject(err);
    else req.resolve(req.results);
    this.pump();
  }

  /** Frees a request's queue places now, so a dropped request does not hold capacity until its turn. */
  private dropWaiting(req: Request<G, I, O>): void {
    if (req.waiting === 0) return;
    const q = this.queues.get(req.key);
    if (q) {
      const kept = q.filter((s) => s.req !== req);
      this.queued -= q.length - kept.length;
      if (kept.length === 0) this.queues.delete(req.key);
      else this.queues.set(req.key, kept);
    }
    req.waiting = 0;
  }

  /** The key whose batch should run now, or the time until one is due. */
  private nextDue(now: number): { key?: string; waitMs: number } {
    let best: string | undefined;
    let bestAt = Number.POSITIVE_INFINITY;
    let wait = Number.POSITIVE_INFINITY;
    for (const [key, q] of this.queues) {
      const head = q[0].req.enqueuedAt;
      const left = q.length >= this.limits.maxBatch ? 0 : head + this.limits.maxDelayMs - now;
      if (left <= 0) {
        if (head < bestAt) {
          best = key;
          bestAt = head;
        }
      } else if (left < wait) wait = left;
    }
    return { key: best, waitMs: wait };
  }

  private pump(): void {
    if (this.running) return;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.queued === 0 || this.closed) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
      return;
    }
    const { key, waitMs } = this.nextDue(Date.now());
    if (key === undefined) {
      this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(waitMs)));
      return;
    }
    const q = this.queues.get(key)!;
    const take = q.splice(0, this.limits.maxBatch);
    if (q.length === 0) this.queues.delete(key);
    this.queued -= take.length;
    for (const s of take) {
      s.req.waiting--;
      s.req.inFlight++;
    }
    void this.runBatch(take);
  }

  private async runBatch(live: Slot<G, I, O>[]): Promise<void> {
    this.running = true;
    try {
      this.stats.batches++;
      this.stats.items += live.length;
      this.stats.largestBatch = Math.max(this.stats.largestBatch, live.length);
      let out: O[] | undefined;
      let failure: unknown;
      try {
        out = await this.run(
          live[0].req.group,
          live.map((s) => s.req.items[s.index]),
        );
        if (out.length !== live.length)
          throw new Error(`batch runner returned ${out.length} outputs for ${live.length} items`);
      } catch (err) {
        failure = err ?? new Error("batch failed");
      }
      for (let i = 0; i < live.length; i++) {
        const { req, index } = live[i];
        req.inFlight--;
        if (req.done) continue;
        if (failure !== undefined) {
          this.finish(req, failure);
          continue;
        }
        req.results[index] = out![i];
        req.remaining--;
        if (req.abortedWith !== undefined) {
          if (req.inFlight === 0) this.finish(req, req.abortedWith);
        } else if (req.remaining === 0) this.finish(req);
      }
    } finally {
      this.running = false;
      this.pump();
    }
  }
}

function abortError(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  if (reason instanceof Error && reason.name === "TimeoutError") {
    return new ConnectError("deadline exceeded while queued", Code.DeadlineExceeded);
  }
  return new ConnectError(
    `request cancelled while queued${reason instanceof Error ? `: ${reason.message}` : ""}`,
    Code.Canceled,
  );
}
