import { type Context, context } from "@opentelemetry/api";
import { MalformedMessageError } from "./errors.js";
import { encodeReport, reportMsgId } from "./reports.js";
import { endWithError, getHeader, startConsumerSpan, subscriberContext } from "./trace.js";
import type {
  Delivery,
  DeliveryHandler,
  DeliveryPolicy,
  Headers,
  PublishAck,
  TerminationReason,
  TerminationReport,
} from "./types.js";

/** A delivery policy with every field decided. */
export interface ResolvedPolicy {
  maxDeliver: number;
  ackWaitMs: number;
  backoffMs: number[];
  concurrency: number;
  beforeTerminate?: DeliveryPolicy["beforeTerminate"];
  onTerminated?: DeliveryPolicy["onTerminated"];
}

/** Defaults a policy falls back to (from the bus definitions). */
export interface PolicyDefaults {
  maxDeliver: number;
  ackWaitMs: number;
  backoffMs: number[];
  concurrency: number;
}

/** Merge `p` over `defaults`, checking every value. */
export function resolvePolicy(p: DeliveryPolicy, defaults: PolicyDefaults): ResolvedPolicy {
  const out: ResolvedPolicy = {
    maxDeliver: p.maxDeliver ?? defaults.maxDeliver,
    ackWaitMs: p.ackWaitMs ?? defaults.ackWaitMs,
    backoffMs: p.backoffMs ?? defaults.backoffMs,
    concurrency: p.concurrency ?? defaults.concurrency,
    beforeTerminate: p.beforeTerminate,
    onTerminated: p.onTerminated,
  };
  if (!Number.isInteger(out.maxDeliver) || out.maxDeliver < 1) {
    throw new Error(`maxDeliver must be an integer ≥ 1, got ${out.maxDeliver}`);
  }
  if (!Number.isFinite(out.ackWaitMs) || out.ackWaitMs < 100) {
    throw new Error(`ackWaitMs must be ≥ 100 ms, got ${out.ackWaitMs}`);
  }
  if (out.backoffMs.length === 0 || out.backoffMs.some((b) => !Number.isFinite(b) || b < 0)) {
    throw new Error(`backoffMs must be a non-empty list of delays ≥ 0 ms, got [${out.backoffMs.join(", ")}]`);
  }
  if (!Number.isInteger(out.concurrency) || out.concurrency < 1) {
    throw new Error(`concurrency must be an integer ≥ 1, got ${out.concurrency}`);
  }
  return out;
}

/** A message as a backend hands it over, before the bus adds tracing and policy. */
export interface RawMessage {
  /** Logical subject. */
  subject: string;
  data: Uint8Array;
  headers: Headers;
  seq: number;
  deliveryCount: number;
  time: Date;
}

/** The backend's acknowledgement operations for one delivery. */
export interface AckOps {
  ack(): Promise<void>;
  /** Redeliver after `delayMs`. */
  nak(delayMs: number): void;
  /** Never redeliver. */
  term(): Promise<void>;
  /** Reset the ack deadline. */
  working(): void;
}

/** How a runner publishes termination reports (to the reports stream, deduplicated by msgId). */
export type ReportPublisher = (
  subject: string,
  data: Uint8Array,
  headers: Headers,
  msgId: string,
) => Promise<PublishAck>;

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs deliveries through a handler with one policy: ack on success, backoff-nak on error, terminate and
 * report on malformed messages and after maxDeliver deliveries. Both backends use it, so the semantics are
 * the same by construction; the backends differ only in how messages arrive and are acked. */
export class DeliveryRunner {
  private readonly running = new Set<Promise<void>>();
  private abandoned = false;
  /** The subscriber's context (without its span): deliveries are traced as the subscribing service's. */
  private readonly owner: Context = subscriberContext();

  constructor(
    private readonly source: "events" | "work",
    /** Durable consumer name (goes into reports). */
    readonly consumer: string,
    readonly policy: ResolvedPolicy,
    private readonly handler: DeliveryHandler,
    private readonly publishReport: ReportPublisher,
  ) {}

  /** Handlers running now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Process one delivery; never rejects (errors are turned into nak/term and logged). */
  run(raw: RawMessage, ops: AckOps): Promise<void> {
    const p = this.process(raw, ops).catch((err) => {
      console.error(
        `[bus] ${this.consumer}: failed to settle ${raw.subject} #${raw.seq}: ${errorMessage(err)}`,
      );
    });
    this.running.add(p);
    void p.finally(() => this.running.delete(p));
    return p;
  }

  /** Wait for running handlers up to `timeoutMs`; those still running are abandoned (never acked). */
  async drain(timeoutMs: number): Promise<void> {
    if (this.running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      });
      await Promise.race([Promise.all([...this.running]), timeout]);
      clearTimeout(timer);
    }
    this.abandoned = true;
  }

  private async process(raw: RawMessage, ops: AckOps): Promise<void> {
    const { maxDeliver } = this.policy;
    if (raw.deliveryCount > maxDeliver) {
      // The previous delivery was never settled (its worker died or overran ackWait): terminate now.
      await this.terminate(
        raw,
        ops,
        "max-deliver",
        `not acknowledged after ${raw.deliveryCount - 1} deliveries (worker died or exceeded ackWait)`,
      );
      return;
    }
    const { span, ctx } = startConsumerSpan(
      raw.subject,
      this.consumer,
      raw.headers,
      raw.deliveryCount,
      this.owner,
    );
    const msg: Delivery = {
      subject: raw.subject,
      data: raw.data,
      headers: raw.headers,
      seq: raw.seq,
      deliveryCount: raw.deliveryCount,
      msgId: getHeader(raw.headers, "Nats-Msg-Id") ?? "",
      time: raw.time,
      context: ctx,
      working: () => ops.working(),
    };
    let failure: unknown;
    let failed = false;
    try {
      await context.with(ctx, () => this.handler(msg));
      span.end();
    } catch (err) {
      failed = true;
      failure = err;
      endWithError(span, err);
    }
    if (this.abandoned) return;
    if (!failed) {
      await ops.ack();
      return;
    }
    if (failure instanceof MalformedMessageError) {
      await this.terminate(raw, ops, "malformed", failure.message);
      return;
    }
    if (raw.deliveryCount >= maxDeliver) {
      await this.terminate(raw, ops, "max-deliver", errorMessage(failure));
      return;
    }
    const { backoffMs } = this.policy;
    ops.nak(backoffMs[Math.min(raw.deliveryCount - 1, backoffMs.length - 1)]);
  }

  private async terminate(
    raw: RawMessage,
    ops: AckOps,
    reason: TerminationReason,
    error: string,
  ): Promise<void> {
    const report: TerminationReport = {
      source: this.source,
      consumer: this.consumer,
      subject: raw.subject,
      seq: raw.seq,
      msgId: getHeader(raw.headers, "Nats-Msg-Id") ?? "",
      deliveryCount: raw.deliveryCount,
      reason,
      error,
      data: raw.data,
      headers: raw.headers,
    };
    const retryDelay = this.policy.backoffMs[this.policy.backoffMs.length - 1];
    try {
      await this.policy.beforeTerminate?.(report);
      const enc = encodeReport(report);
      const ack = await this.publishReport(enc.subject, enc.data, enc.headers, reportMsgId(report));
      if (!ack.duplicate) {
        try {
          this.policy.onTerminated?.(report);
        } catch (err) {
          console.error(`[bus] ${this.consumer}: onTerminated threw: ${errorMessage(err)}`);
        }
      }
    } catch (err) {
      // Not reported yet: leave the message to be redelivered so that termination is retried.
      console.error(
        `[bus] ${this.consumer}: could not report terminated ${raw.subject} #${raw.seq}: ${errorMessage(err)}`,
      );
      if (!this.abandoned) ops.nak(retryDelay);
      return;
    }
    if (this.abandoned) return;
    await ops.term();
  }
}
