import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { checkEnqueue, checkEventPublish, checkSubscribe } from "../checks.js";
import { DeliveryRunner, type ReportPublisher, resolvePolicy } from "../delivery.js";
import { BusConfigError } from "../errors.js";
import type { BusDefinitions } from "../nats/definitions.js";
import { withProducerSpan } from "../trace.js";
import type {
  Bus,
  ConsumeOptions,
  DeliveryHandler,
  EventLog,
  Headers,
  PublishAck,
  PublishOptions,
  StopOptions,
  SubscribeOptions,
  Subscription,
  WorkQueue,
} from "../types.js";
import { EmbeddedArtifactStore } from "./embedded-artifact-store.js";
import { EmbeddedStateStore } from "./embedded-state-store.js";
import { EmbeddedStream } from "./embedded-stream.js";
import { EmbeddedSubscription } from "./embedded-subscription.js";

/** True if a process with this pid is running. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The stores of one directory, shared by every handle opened on it in this process. */
class EmbeddedCore {
  readonly events: EmbeddedStream;
  readonly reports: EmbeddedStream;
  readonly work: EmbeddedStream;
  readonly state: EmbeddedStateStore;
  readonly artifacts: EmbeddedArtifactStore;
  refs = 0;
  private readonly lockPath: string;

  constructor(
    readonly dir: string,
    readonly defs: BusDefinitions,
  ) {
    mkdirSync(dir, { recursive: true });
    this.lockPath = join(dir, "LOCK");
    let holder: number | undefined;
    try {
      holder = Number(readFileSync(this.lockPath, "utf8"));
    } catch {
      holder = undefined;
    }
    if (holder !== undefined && holder !== process.pid && alive(holder)) {
      throw new BusConfigError(
        `the embedded bus at ${dir} is in use by process ${holder}; the embedded backend serves one process ` +
          "(run all services in it, or set IDPO_NATS_URL to share a NATS server)",
      );
    }
    writeFileSync(this.lockPath, String(process.pid));
    this.events = new EmbeddedStream(defs.events, join(dir, "streams", defs.events.name));
    this.reports = new EmbeddedStream(defs.reports, join(dir, "streams", defs.reports.name));
    this.work = new EmbeddedStream(defs.work.stream, join(dir, "streams", defs.work.stream.name));
    this.state = new EmbeddedStateStore(join(dir, "state"), defs.limits.stateMaxValueBytes);
    this.artifacts = new EmbeddedArtifactStore(join(dir, "artifacts"));
  }

  publishReport: ReportPublisher = async (subject, data, headers, msgId) =>
    this.reports.publish(subject, data, { ...headers, "Nats-Msg-Id": msgId }, msgId);

  close(): void {
    this.events.close();
    this.reports.close();
    this.work.close();
    this.state.close();
    rmSync(this.lockPath, { force: true });
  }
}

const cores = new Map<string, EmbeddedCore>();

function storeHeaders(headers: Headers, msgId: string): Headers {
  return { ...headers, "Nats-Msg-Id": msgId };
}

class EmbeddedEventLog implements EventLog {
  constructor(
    private readonly core: EmbeddedCore,
    private readonly subs: Set<Subscription>,
  ) {}

  async publish(subject: string, data: Uint8Array, opts: PublishOptions): Promise<PublishAck> {
    checkEventPublish(subject, data, opts);
    return withProducerSpan(
      "publish",
      subject,
      opts.headers ?? {},
      async (h) => this.core.events.publish(subject, data, storeHeaders(h, opts.msgId), opts.msgId),
      opts.msgId,
    );
  }

  async subscribe(opts: SubscribeOptions, handler: DeliveryHandler): Promise<Subscription> {
    const { filter, stream } = checkSubscribe(opts);
    const { limits } = this.core.defs;
    const policy = resolvePolicy(opts, {
      maxDeliver: limits.eventsMaxDeliver,
      ackWaitMs: limits.eventsAckWaitMs,
      backoffMs: limits.backoffMs,
      concurrency: 1,
    });
    const s = stream === "events" ? this.core.events : this.core.reports;
    const consumer = s.consumer(opts.consumer, filter, opts.start ?? "all", policy.ackWaitMs);
    const runner = new DeliveryRunner("events", opts.consumer, policy, handler, this.core.publishReport);
    const sub = new EmbeddedSubscription(consumer, runner, (x) => this.subs.delete(x));
    this.subs.add(sub);
    return sub;
  }

  async lastSeq(): Promise<number> {
    return this.core.events.lastSeq;
  }
}

class EmbeddedWorkQueue implements WorkQueue {
  constructor(
    private readonly core: EmbeddedCore,
    private readonly subs: Set<Subscription>,
  ) {}

  async enqueue(data: Uint8Array, opts: PublishOptions): Promise<PublishAck> {
    checkEnqueue(data, opts);
    const { subject } = this.core.defs.work;
    return withProducerSpan(
      "enqueue",
      subject,
      opts.headers ?? {},
      async (h) => this.core.work.publish(subject, data, storeHeaders(h, opts.msgId), opts.msgId),
      opts.msgId,
    );
  }

  async consume(handler: DeliveryHandler, opts: ConsumeOptions = {}): Promise<Subscription> {
    const { work, limits } = this.core.defs;
    const policy = resolvePolicy(opts, {
      maxDeliver: work.maxDeliver,
      ackWaitMs: work.ackWaitMs,
      backoffMs: limits.backoffMs,
      concurrency: 1,
    });
    const consumer = this.core.work.consumer(work.consumer, work.subject, "all", policy.ackWaitMs);
    const runner = new DeliveryRunner("work", work.consumer, policy, handler, this.core.publishReport);
    const sub = new EmbeddedSubscription(consumer, runner, (x) => this.subs.delete(x));
    this.subs.add(sub);
    return sub;
  }

  async pending(): Promise<number> {
    return this.core.work.size;
  }
}

/**
 * Open the embedded bus under `<dataDir>/bus/<namePrefix or "default">`. Handles opened in the same
 * process share one set of stores (so services in one process see each other's messages); another
 * process holding the directory is refused. State, artifacts, the event log, consumer positions and
 * unacked work items persist across restarts.
 */
export async function openEmbeddedBus(dataDir: string, defs: BusDefinitions): Promise<Bus> {
  const dir = join(dataDir, "bus", defs.prefix || "default");
  let core = cores.get(dir);
  if (core && JSON.stringify(core.defs) !== JSON.stringify(defs)) {
    throw new BusConfigError(
      `the embedded bus at ${dir} is already open in this process with other definitions/limits; ` +
        "open every handle with the same options",
    );
  }
  if (!core) {
    core = new EmbeddedCore(dir, defs);
    cores.set(dir, core);
  }
  core.refs++;
  const subs = new Set<Subscription>();
  const c = core;
  let closing: Promise<void> | undefined;
  return {
    kind: "embedded",
    events: new EmbeddedEventLog(c, subs),
    work: new EmbeddedWorkQueue(c, subs),
    state: c.state,
    artifacts: c.artifacts,
    close(opts: StopOptions = {}) {
      closing ??= (async () => {
        await Promise.all([...subs].map((s) => s.stop(opts)));
        c.refs--;
        if (c.refs === 0) {
          cores.delete(dir);
          c.close();
        }
      })();
      return closing;
    },
  };
}
