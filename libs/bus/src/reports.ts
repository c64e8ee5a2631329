import { REPORTS_ROOT } from "./subjects.js";
import { getHeader } from "./trace.js";
import type { Delivery, Headers, TerminationReason, TerminationReport } from "./types.js";

const H = {
  source: "Idpo-Report-Source",
  consumer: "Idpo-Report-Consumer",
  subject: "Idpo-Report-Subject",
  seq: "Idpo-Report-Seq",
  msgId: "Idpo-Report-Msg-Id",
  deliveries: "Idpo-Report-Deliveries",
  reason: "Idpo-Report-Reason",
  error: "Idpo-Report-Error",
} as const;
/** Headers of the terminated message are kept under this prefix (its Nats-Msg-Id must not be reused). */
const ORIG = "Idpo-Orig-";
const MAX_ERROR_CHARS = 2000;

/** Subject a report of `consumer` goes to. */
export function reportSubject(source: "events" | "work", consumer: string): string {
  return `${REPORTS_ROOT}.${source}.${consumer}`;
}

/** The report's msgId: one report per terminated message and consumer, however often termination is retried. */
export function reportMsgId(report: TerminationReport): string {
  return `report:${report.source}:${report.consumer}:${report.seq}`;
}

/** Header values are single lines: NATS headers cannot carry CR/LF. */
function oneLine(s: string): string {
  const flat = s.replace(/[\r\n]+/g, " | ");
  return flat.length > MAX_ERROR_CHARS ? `${flat.slice(0, MAX_ERROR_CHARS)}…` : flat;
}

/** The report message: the terminated payload as body, the facts as headers. */
export function encodeReport(report: TerminationReport): {
  subject: string;
  data: Uint8Array;
  headers: Headers;
} {
  const headers: Headers = {
    [H.source]: report.source,
    [H.consumer]: report.consumer,
    [H.subject]: report.subject,
    [H.seq]: String(report.seq),
    [H.msgId]: report.msgId,
    [H.deliveries]: String(report.deliveryCount),
    [H.reason]: report.reason,
    [H.error]: oneLine(report.error),
  };
  for (const [k, v] of Object.entries(report.headers)) headers[ORIG + k] = oneLine(v);
  return { subject: reportSubject(report.source, report.consumer), data: report.data, headers };
}

/** Decode a report delivered from an `idpo.reports.>` subscription. Throws if it is not a report. */
export function decodeReport(msg: Pick<Delivery, "data" | "headers">): TerminationReport {
  const req = (name: string): string => {
    const v = getHeader(msg.headers, name);
    if (v === undefined) throw new Error(`not a termination report: header ${name} is missing`);
    return v;
  };
  const source = req(H.source);
  if (source !== "events" && source !== "work") throw new Error(`termination report: bad source "${source}"`);
  const reason = req(H.reason);
  if (reason !== "malformed" && reason !== "max-deliver") {
    throw new Error(`termination report: bad reason "${reason}"`);
  }
  const headers: Headers = {};
  for (const [k, v] of Object.entries(msg.headers)) {
    if (k.toLowerCase().startsWith(ORIG.toLowerCase())) headers[k.slice(ORIG.length)] = v;
  }
  return {
    source,
    consumer: req(H.consumer),
    subject: req(H.subject),
    seq: Number(req(H.seq)),
    msgId: req(H.msgId),
    deliveryCount: Number(req(H.deliveries)),
    reason: reason as TerminationReason,
    error: req(H.error),
    data: msg.data,
    headers,
  };
}
