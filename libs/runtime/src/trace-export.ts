import { type ExportResult, ExportResultCode } from "@opentelemetry/core";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace-base";
import type { Logger } from "./logger.js";

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A connection that broke before an answer: often a kept-alive socket the collector had just closed, so
 * one more try on a fresh connection usually goes through. */
const BROKEN_CONNECTION = /ECONNRESET|EPIPE|socket hang up/i;

/**
 * Wraps a span exporter so that telemetry can never hurt the work it observes:
 * - a failed export is logged once per outage (and once more when exports succeed again), never thrown;
 * - an export whose connection broke is tried once more at once (a collector closing an idle kept-alive
 *   connection just as it is reused would otherwise cost a batch);
 * - one export at a time: while one is pending (a collector that hangs), further batches are dropped and
 *   counted, so a dead collector holds at most the batch processor's queue plus one batch in memory;
 * - shutdown and flush never reject.
 */
export class GuardedExporter implements SpanExporter {
  private pending = false;
  private failing = false;
  /** Batches that did not reach the collector (failed or dropped) since the outage began. */
  private lostBatches = 0;
  /** Spans that did not reach the collector, over the exporter's life. */
  lostSpans = 0;

  constructor(
    private readonly inner: SpanExporter,
    /** Where the collector is (for the log line). */
    private readonly target: string,
    private readonly logger: Logger,
  ) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    if (this.pending) {
      this.lost(spans.length, new Error("the previous export is still pending"));
      done({ code: ExportResultCode.FAILED });
      return;
    }
    this.pending = true;
    const finish = (result: ExportResult) => {
      if (!this.pending) return;
      this.pending = false;
      if (result.code === ExportResultCode.SUCCESS) {
        if (this.failing) {
          this.logger.info("trace export recovered", {
            collector: this.target,
            lostBatches: this.lostBatches,
          });
          this.failing = false;
          this.lostBatches = 0;
        }
      } else {
        this.lost(spans.length, result.error ?? new Error("export failed"));
      }
      done(result);
    };
    this.attempt(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS || !BROKEN_CONNECTION.test(errorMessage(result.error))) {
        finish(result);
      } else {
        this.attempt(spans, finish);
      }
    });
  }

  private attempt(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    try {
      this.inner.export(spans, done);
    } catch (err) {
      done({ code: ExportResultCode.FAILED, error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  private lost(spans: number, err: unknown): void {
    this.lostSpans += spans;
    this.lostBatches++;
    if (this.failing) return;
    this.failing = true;
    this.logger.warn("trace export failed; spans are dropped until the collector answers again", {
      collector: this.target,
      error: errorMessage(err),
    });
  }

  async forceFlush(): Promise<void> {
    await this.inner.forceFlush?.().catch(() => undefined);
  }

  async shutdown(): Promise<void> {
    await this.inner.shutdown().catch(() => undefined);
  }
}
