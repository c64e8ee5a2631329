import {
  checkFilter,
  checkLiteralSubject,
  checkName,
  EVENTS_ROOT,
  filterUnder,
  REPORTS_ROOT,
} from "./subjects.js";
import type { PublishOptions, SubscribeOptions } from "./types.js";

/** Checks shared by both backends' `publish`. */
export function checkEventPublish(subject: string, data: Uint8Array, opts: PublishOptions): void {
  checkLiteralSubject(subject);
  if (!subject.startsWith(`${EVENTS_ROOT}.`) || subject.split(".").length < 4) {
    throw new Error(`event subject "${subject}" must be ${EVENTS_ROOT}.<runId>.<kind>`);
  }
  if (!(data instanceof Uint8Array)) throw new Error(`event data for ${subject} must be a Uint8Array`);
  if (!opts || typeof opts.msgId !== "string" || opts.msgId.length === 0) {
    throw new Error(`publish to ${subject}: a non-empty msgId is required (it de-duplicates retries)`);
  }
}

/** Checks shared by both backends' `subscribe`; returns the filter and which stream it reads. */
export function checkSubscribe(opts: SubscribeOptions): { filter: string; stream: "events" | "reports" } {
  checkName(opts.consumer, "consumer name");
  const filter = opts.filter ?? `${EVENTS_ROOT}.>`;
  checkFilter(filter);
  if (filterUnder(filter, EVENTS_ROOT)) return { filter, stream: "events" };
  if (filterUnder(filter, REPORTS_ROOT)) return { filter, stream: "reports" };
  throw new Error(`subscription filter "${filter}" must lie under ${EVENTS_ROOT}.> or ${REPORTS_ROOT}.>`);
}

/** Checks of a work-queue enqueue. */
export function checkEnqueue(data: Uint8Array, opts: PublishOptions): void {
  if (!(data instanceof Uint8Array)) throw new Error("work item data must be a Uint8Array");
  if (!opts || typeof opts.msgId !== "string" || opts.msgId.length === 0) {
    throw new Error("enqueue: a non-empty msgId is required (it de-duplicates retries)");
  }
}

const KEY = /^[-/_=.A-Za-z0-9]+$/;

/** State keys follow NATS KV's rules so that both backends accept the same keys. */
export function checkStateKey(key: string): void {
  if (typeof key !== "string" || !KEY.test(key) || key.startsWith(".") || key.endsWith(".")) {
    throw new Error(`state key "${key}" is invalid: use [A-Za-z0-9_=/.-], not starting or ending with "."`);
  }
}

/** Artifact names: any non-empty string without control characters, at most 1024 characters. */
export function checkArtifactName(name: string): void {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: rejecting control characters is the point
  if (typeof name !== "string" || name.length === 0 || name.length > 1024 || /[\x00-\x1f]/.test(name)) {
    throw new Error(`artifact name "${name}" is invalid: 1-1024 characters, no control characters`);
  }
}
