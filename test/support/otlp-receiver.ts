/**
 * An OTLP/HTTP trace receiver for tests and docs: accepts `POST /v1/traces` in JSON and in protobuf, decodes
 * spans (with an independent protobuf reader of the OTLP fields we look at), and can misbehave like a
 * collector that goes away (reset every connection after the first N requests).
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

/** An attribute value as OTLP carries it (arrays and maps flattened to JSON text). */
export type AttrValue = string | number | boolean;

/** One received span. */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** "" for a root span. */
  parentSpanId: string;
  name: string;
  /** OTLP SpanKind: 1 internal, 2 server, 3 client, 4 producer, 5 consumer. */
  kind: number;
  startNs: bigint;
  endNs: bigint;
  attributes: Record<string, AttrValue>;
  links: { traceId: string; spanId: string }[];
  /** OTLP status code: 0 unset, 1 ok, 2 error. */
  statusCode: number;
  /** The resource's attributes. */
  resource: Record<string, AttrValue>;
  /** The resource's `service.name`. */
  service: string;
}

/** OTLP SpanKind values. */
export const SPAN_KIND = { INTERNAL: 1, SERVER: 2, CLIENT: 3, PRODUCER: 4, CONSUMER: 5 } as const;

/** How the receiver behaves. */
export interface ReceiverOptions {
  /** Answer this many requests, then reset the connection of every later one; default never reset. */
  resetAfter?: number;
}

/** A running receiver. */
export interface OtlpReceiver {
  /** Base URL for OTEL_EXPORTER_OTLP_ENDPOINT (spans go to `<url>/v1/traces`). */
  url: string;
  spans: ReceivedSpan[];
  /** Content types of the requests answered, in order. */
  contentTypes: string[];
  /** Requests whose connection was reset. */
  resets: number;
  close(): Promise<void>;
}

// ---- protobuf (opentelemetry/proto/trace/v1/trace.proto, common/v1/common.proto) -------------------------

function hex(b: Uint8Array): string {
  return Buffer.from(b).toString("hex");
}

function readAnyValue(r: BinaryReader, end: number): AttrValue {
  let v: AttrValue = "";
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) v = r.string();
    else if (no === 2 && wt === WireType.Varint) v = r.bool();
    else if (no === 3 && wt === WireType.Varint) v = Number(r.int64());
    else if (no === 4 && wt === WireType.Bit64) v = r.double();
    else r.skip(wt, no);
  }
  return v;
}

function readKeyValue(r: BinaryReader, end: number): [string, AttrValue] {
  let key = "";
  let value: AttrValue = "";
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (no === 1 && wt === WireType.LengthDelimited) key = r.string();
    else if (no === 2 && wt === WireType.LengthDelimited) {
      const len = r.uint32();
      value = readAnyValue(r, r.pos + len);
    } else r.skip(wt, no);
  }
  return [key, value];
}

/** Reads a length-delimited sub-message with `each` called per field; returns when it ends. */
function sub(r: BinaryReader, each: (no: number, wt: WireType, end: number) => boolean): void {
  const len = r.uint32();
  const end = r.pos + len;
  while (r.pos < end) {
    const [no, wt] = r.tag();
    if (!each(no, wt, end)) r.skip(wt, no);
  }
}

function readAttribute(r: BinaryReader, into: Record<string, AttrValue>): void {
  const len = r.uint32();
  const [k, v] = readKeyValue(r, r.pos + len);
  into[k] = v;
}

function decodeProtobuf(body: Uint8Array): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  const r = new BinaryReader(body);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1 || wt !== WireType.LengthDelimited) {
      r.skip(wt, no);
      continue;
    }
    // ResourceSpans
    const resource: Record<string, AttrValue> = {};
    const spans: Omit<ReceivedSpan, "resource" | "service">[] = [];
    sub(r, (no) => {
      if (no === 1) {
        sub(r, (no) => {
          if (no !== 1) return false;
          readAttribute(r, resource);
          return true;
        });
        return true;
      }
      if (no === 2) {
        // ScopeSpans
        sub(r, (no) => {
          if (no !== 2) return false;
          const s: Omit<ReceivedSpan, "resource" | "service"> = {
            traceId: "",
            spanId: "",
            parentSpanId: "",
            name: "",
            kind: 0,
            startNs: 0n,
            endNs: 0n,
            attributes: {},
            links: [],
            statusCode: 0,
          };
          sub(r, (no) => {
            switch (no) {
              case 1:
                s.traceId = hex(r.bytes());
                return true;
              case 2:
                s.spanId = hex(r.bytes());
                return true;
              case 4:
                s.parentSpanId = hex(r.bytes());
                return true;
              case 5:
                s.name = r.string();
                return true;
              case 6:
                s.kind = r.int32();
                return true;
              case 7:
                s.startNs = BigInt(r.fixed64());
                return true;
              case 8:
                s.endNs = BigInt(r.fixed64());
                return true;
              case 9:
                readAttribute(r, s.attributes);
                return true;
              case 13: {
                const link = { traceId: "", spanId: "" };
                sub(r, (no) => {
                  if (no === 1) link.traceId = hex(r.bytes());
                  else if (no === 2) link.spanId = hex(r.bytes());
                  else return false;
                  return true;
                });
                s.links.push(link);
                return true;
              }
              case 15:
                sub(r, (no) => {
                  if (no !== 3) return false;
                  s.statusCode = r.int32();
                  return true;
                });
                return true;
              default:
                return false;
            }
          });
          spans.push(s);
          return true;
        });
        return true;
      }
      return false;
    });
    for (const s of spans) out.push({ ...s, resource, service: String(resource["service.name"] ?? "") });
  }
  return out;
}

// ---- JSON (the protobuf JSON mapping, ids in hex as OTLP/JSON specifies) ---------------------------------

interface JsonAnyValue {
  stringValue?: string;
  boolValue?: boolean;
  intValue?: number | string;
  doubleValue?: number;
}
interface JsonKeyValue {
  key: string;
  value?: JsonAnyValue;
}

function jsonAttributes(kvs: JsonKeyValue[] | undefined): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  for (const kv of kvs ?? []) {
    const v = kv.value ?? {};
    out[kv.key] =
      v.stringValue ?? v.boolValue ?? (v.intValue !== undefined ? Number(v.intValue) : (v.doubleValue ?? ""));
  }
  return out;
}

function decodeJson(body: Uint8Array): ReceivedSpan[] {
  const req = JSON.parse(Buffer.from(body).toString("utf8")) as {
    resourceSpans?: {
      resource?: { attributes?: JsonKeyValue[] };
      scopeSpans?: {
        spans?: {
          traceId: string;
          spanId: string;
          parentSpanId?: string;
          name: string;
          kind?: number;
          startTimeUnixNano: string | number;
          endTimeUnixNano: string | number;
          attributes?: JsonKeyValue[];
          links?: { traceId: string; spanId: string }[];
          status?: { code?: number };
        }[];
      }[];
    }[];
  };
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = jsonAttributes(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? "",
          name: s.name,
          kind: s.kind ?? 0,
          startNs: BigInt(s.startTimeUnixNano),
          endNs: BigInt(s.endTimeUnixNano),
          attributes: jsonAttributes(s.attributes),
          links: (s.links ?? []).map((l) => ({ traceId: l.traceId, spanId: l.spanId })),
          statusCode: s.status?.code ?? 0,
          resource,
          service: String(resource["service.name"] ?? ""),
        });
      }
    }
  }
  return out;
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return new Uint8Array(Buffer.concat(chunks));
}

/** Starts a receiver on a free loopback port. */
export async function startOtlpReceiver(opts: ReceiverOptions = {}): Promise<OtlpReceiver> {
  const sockets = new Set<Socket>();
  let answered = 0;
  const receiver = {
    url: "",
    spans: [] as ReceivedSpan[],
    contentTypes: [] as string[],
    resets: 0,
    close: async () => {},
  };
  const server: Server = createServer(async (req, res) => {
    if (opts.resetAfter !== undefined && answered >= opts.resetAfter) {
      receiver.resets++;
      req.socket.destroy();
      return;
    }
    if (req.method !== "POST" || req.url !== "/v1/traces") {
      res.writeHead(404).end();
      return;
    }
    const type = (req.headers["content-type"] ?? "").split(";")[0].trim();
    const body = await readBody(req);
    try {
      if (type === "application/json") receiver.spans.push(...decodeJson(body));
      else if (type === "application/x-protobuf") receiver.spans.push(...decodeProtobuf(body));
      else {
        res.writeHead(415).end();
        return;
      }
    } catch (err) {
      res.writeHead(400, { "content-type": "text/plain" }).end((err as Error).message);
      return;
    }
    answered++;
    receiver.contentTypes.push(type);
    // An empty ExportTraceServiceResponse: `{}` in JSON, no bytes in protobuf.
    res.writeHead(200, { "content-type": type }).end(type === "application/json" ? "{}" : "");
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.once("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  receiver.close = () =>
    new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    });
  return receiver;
}
