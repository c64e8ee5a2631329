import { create, fromBinary, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { type RunEvent, RunEventSchema } from "@idpo/proto";
import { MalformedMessageError } from "./errors.js";
import { EVENTS_ROOT, isSubjectToken } from "./subjects.js";
import type { Delivery, EventLog, Headers, PublishAck, SubscribeOptions, Subscription } from "./types.js";

/** The oneof case of a RunEvent payload, e.g. "pairsReady". */
export type RunEventCase = NonNullable<RunEvent["payload"]["case"]>;

/** The proto field name of each payload case: the `<kind>` token of the event's subject. */
const KIND_OF_CASE: ReadonlyMap<string, string> = new Map(
  RunEventSchema.oneofs[0].fields.map((f) => [f.localName, f.name] as const),
);
const CASE_OF_KIND: ReadonlyMap<string, string> = new Map([...KIND_OF_CASE].map(([c, k]) => [k, c] as const));

/** Subject kind of a payload case ("pairsReady" → "pairs_ready"). */
export function runEventKind(payloadCase: RunEventCase): string {
  const kind = KIND_OF_CASE.get(payloadCase);
  if (!kind) throw new Error(`unknown RunEvent payload "${payloadCase}"`);
  return kind;
}

/** `idpo.events.<runId>.<kind>` of an event. */
export function runEventSubject(runId: string, payloadCase: RunEventCase): string {
  return `${EVENTS_ROOT}.${runId}.${runEventKind(payloadCase)}`;
}

/** Problems of a RunEvent's envelope ("" when fine): event id, run id, payload. */
function envelopeProblem(ev: RunEvent): string {
  if (ev.eventId === "") return "event_id is empty (it is the de-duplication key)";
  if (!isSubjectToken(ev.runId)) return `run_id ${JSON.stringify(ev.runId)} must match [A-Za-z0-9_=:@-]+`;
  if (!ev.payload.case) return "no payload is set";
  return "";
}

/**
 * Publish a run event to `idpo.events.<runId>.<kind>` with msgId = its event id, so a retried publish is
 * stored once. `time` defaults to now.
 */
export async function publishRunEvent(
  events: EventLog,
  init: MessageInitShape<typeof RunEventSchema>,
  headers?: Headers,
): Promise<PublishAck> {
  const ev = create(RunEventSchema, { time: timestampNow(), ...init });
  const problem = envelopeProblem(ev);
  if (problem) throw new Error(`RunEvent ${JSON.stringify(ev.eventId)}: ${problem}`);
  return events.publish(runEventSubject(ev.runId, ev.payload.case!), toBinary(RunEventSchema, ev), {
    msgId: ev.eventId,
    headers,
  });
}

/** A RunEvent whose payload is of case `K`. */
export type RunEventOf<K extends RunEventCase> = RunEvent & {
  payload: Extract<RunEvent["payload"], { case: K }>;
};

/**
 * Decode and validate a delivered run event: it must decode, have an event id equal to its msgId, a run id
 * and payload matching its subject, and, when `expected` is given, a payload of that case. Anything else is
 * a {@link MalformedMessageError}, which terminates and reports the message instead of redelivering it.
 */
export function decodeRunEvent(msg: Pick<Delivery, "subject" | "data" | "msgId">): RunEvent;
export function decodeRunEvent<K extends RunEventCase>(
  msg: Pick<Delivery, "subject" | "data" | "msgId">,
  expected: K,
): RunEventOf<K>;
export function decodeRunEvent(
  msg: Pick<Delivery, "subject" | "data" | "msgId">,
  expected?: RunEventCase,
): RunEvent {
  let ev: RunEvent;
  try {
    ev = fromBinary(RunEventSchema, msg.data);
  } catch (err) {
    throw new MalformedMessageError(`${msg.subject}: undecodable RunEvent (${(err as Error).message})`);
  }
  const bad = (what: string) =>
    new MalformedMessageError(`${msg.subject}: RunEvent ${JSON.stringify(ev.eventId)}: ${what}`);
  const problem = envelopeProblem(ev);
  if (problem) throw bad(problem);
  if (msg.msgId !== "" && msg.msgId !== ev.eventId)
    throw bad(`event_id differs from its Nats-Msg-Id "${msg.msgId}"`);
  const [, , runToken, kindToken] = msg.subject.split(".");
  if (runToken !== ev.runId) throw bad(`run_id "${ev.runId}" does not match the subject's run "${runToken}"`);
  if (CASE_OF_KIND.get(kindToken) !== ev.payload.case) {
    throw bad(`payload ${ev.payload.case} does not match the subject's kind "${kindToken}"`);
  }
  if (expected !== undefined && ev.payload.case !== expected) {
    throw bad(`expected a ${runEventKind(expected)} payload, got ${runEventKind(ev.payload.case!)}`);
  }
  return ev;
}

/** Options of {@link subscribeRunEvents}: a durable subscription narrowed by run and/or payload kind. */
export interface RunEventSubscribeOptions extends Omit<SubscribeOptions, "filter"> {
  /** Only this run's events (default: all runs). */
  runId?: string;
  /** Only this payload kind (default: all kinds). */
  payload?: RunEventCase;
}

/**
 * Subscribe to run events, decoded and validated. A malformed event (see {@link decodeRunEvent}) is
 * terminated and reported without reaching the handler; the subscription carries on.
 */
export function subscribeRunEvents(
  events: EventLog,
  opts: RunEventSubscribeOptions,
  handler: (event: RunEvent, msg: Delivery) => Promise<void> | void,
): Promise<Subscription> {
  const { runId, payload, ...rest } = opts;
  if (runId !== undefined && !isSubjectToken(runId))
    throw new Error(`runId ${JSON.stringify(runId)} is not a subject token`);
  const filter = `${EVENTS_ROOT}.${runId ?? "*"}.${payload ? runEventKind(payload) : "*"}`;
  return events.subscribe({ ...rest, filter }, (msg) => handler(decodeRunEvent(msg), msg));
}
