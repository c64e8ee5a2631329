import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { request as httpsRequest } from "node:https";
import {
  ControllerService,
  GeneratorService,
  ImproverService,
  ScorerService,
  TrainerService,
} from "@idpo/proto";
import type { MeshService } from "@idpo/runtime";

/** Which peer serves each RPC path prefix (`/<package>.<Service>/`) the dashboard may call. */
export const PROXIED_SERVICES: Readonly<Record<string, MeshService>> = {
  [ControllerService.typeName]: "controller",
  [TrainerService.typeName]: "trainer",
  [ImproverService.typeName]: "improver",
  [GeneratorService.typeName]: "generator",
  [ScorerService.typeName]: "scorer",
};

/** Headers that describe one connection, not the call, and so are not forwarded (RFC 9110 §7.6.1). */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
  "te",
  "trailer",
  "host",
]);

function forwardable(headers: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k.toLowerCase())) out[k] = v;
  }
  return out;
}

/**
 * The base URL requests to a peer go to: http(s) addresses as they are; a `dns:///host:port` address
 * (balanced by the services' own clients) as `http://host:port`, whose name resolves to one of the replicas.
 */
export function proxyBaseUrl(address: string): URL {
  const m = /^dns:\/\/\/([^:/]+):(\d+)$/.exec(address);
  const url = new URL(m ? `http://${m[1]}:${m[2]}` : address);
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`invalid peer address ${JSON.stringify(address)}: expected http://, https:// or dns:///`);
  }
  return url;
}

/** The peer an RPC path belongs to, or undefined for any other path. */
export function peerOfPath(path: string): MeshService | undefined {
  const m = /^\/([A-Za-z0-9_.]+)\/[A-Za-z0-9_]+$/.exec(path);
  return m ? PROXIED_SERVICES[m[1]] : undefined;
}

/**
 * Forwards one gRPC-Web or Connect call, byte for byte, to `base`: request and response bodies are streamed
 * (server streams such as WatchRun reach the browser message by message), the Authorization header travels
 * with the call so the services' own bearer auth decides, and a browser that goes away cancels the call.
 */
export function forwardCall(
  req: IncomingMessage,
  res: ServerResponse,
  base: URL,
  onError: (err: Error) => void,
) {
  const request = base.protocol === "https:" ? httpsRequest : httpRequest;
  const upstream = request(
    {
      protocol: base.protocol,
      hostname: base.hostname,
      port: base.port,
      method: req.method,
      path: req.url,
      headers: forwardable(req.headers),
    },
    (up) => {
      res.writeHead(up.statusCode ?? 502, forwardable(up.headers));
      up.pipe(res);
    },
  );
  upstream.on("error", (err) => {
    onError(err);
    if (!res.headersSent) {
      res.writeHead(502, { "content-type": "text/plain; charset=utf-8" });
      res.end(`the service at ${base.origin} is unreachable: ${err.message}`);
    } else {
      res.destroy(err);
    }
  });
  res.on("close", () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}
