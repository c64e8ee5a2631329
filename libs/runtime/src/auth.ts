import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import type * as http from "node:http";
import type * as http2 from "node:http2";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { ConfigError } from "./config.js";

/** Services reachable without a token: health must stay open for probes and load balancers. */
const OPEN_SERVICES = new Set(["grpc.health.v1.Health"]);

/**
 * Reads bearer tokens from a file: one per line, blank lines and `#` comments ignored. A file that cannot
 * be read or holds no token is a {@link ConfigError} naming IDPO_AUTH_TOKENS_FILE (`idpo serve` exits 2).
 */
export function readTokensFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(
      "IDPO_AUTH_TOKENS_FILE",
      `cannot read IDPO_AUTH_TOKENS_FILE ${path}: ${(err as Error).message}`,
    );
  }
  const tokens = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (tokens.length === 0) {
    throw new ConfigError("IDPO_AUTH_TOKENS_FILE", `IDPO_AUTH_TOKENS_FILE ${path} holds no token`);
  }
  return tokens;
}

function constantTimeIncludes(tokens: readonly Buffer[], candidate: string): boolean {
  const c = Buffer.from(candidate);
  let found = false;
  for (const t of tokens) {
    if (t.length === c.length && timingSafeEqual(t, c)) found = true;
  }
  return found;
}

/** Why an authorization header does not carry a known bearer token ("" when it does). */
function bearerProblem(known: readonly Buffer[], header: string | null | undefined): string {
  if (header === null || header === undefined) {
    return "missing authorization header (expected: Bearer <token>)";
  }
  const m = /^Bearer\s+(.+)$/i.exec(header.trim());
  return m && constantTimeIncludes(known, m[1]) ? "" : "invalid bearer token";
}

/** Server interceptor: every call except health needs `authorization: Bearer <token>` with a known token. */
export function bearerAuthInterceptor(tokens: readonly string[]): Interceptor {
  const known = tokens.map((t) => Buffer.from(t));
  return (next) => async (req) => {
    if (OPEN_SERVICES.has(req.service.typeName)) return await next(req);
    const problem = bearerProblem(known, req.header.get("authorization"));
    if (problem) throw new ConnectError(problem, Code.Unauthenticated);
    return await next(req);
  };
}

/** Answers a request before its body is read; true when it did. */
export type RequestGate = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => boolean;

/**
 * The bearer check of {@link bearerAuthInterceptor} on the raw request, from its headers alone: an
 * unauthenticated call is answered UNAUTHENTICATED in its protocol (gRPC and gRPC-Web trailers-only,
 * Connect streaming end-of-stream, Connect unary HTTP 401) before a byte of its body is read, where the
 * interceptor only runs once connect has read the whole request (up to IDPO_MAX_MESSAGE_BYTES).
 */
export function bearerAuthGate(tokens: readonly string[]): RequestGate {
  const known = tokens.map((t) => Buffer.from(t));
  return (req, res) => {
    const service = (req.url ?? "").split("?")[0].split("/")[1] ?? "";
    if (OPEN_SERVICES.has(service)) return false;
    const problem = bearerProblem(known, req.headers.authorization);
    if (!problem) return false;
    const type = String(req.headers["content-type"] ?? "");
    // An HTTP/1.1 connection cannot be reused with the body unread.
    const close: Record<string, string> =
      "httpVersionMajor" in req && req.httpVersionMajor === 1 ? { connection: "close" } : {};
    if (type.startsWith("application/grpc")) {
      res.writeHead(200, {
        ...close,
        "content-type": type,
        "grpc-status": String(Code.Unauthenticated),
        "grpc-message": encodeURIComponent(problem),
      });
      res.end();
    } else if (type.startsWith("application/connect+")) {
      const json = Buffer.from(JSON.stringify({ error: { code: "unauthenticated", message: problem } }));
      const envelope = Buffer.alloc(5 + json.length);
      envelope[0] = 0b10; // end of stream
      envelope.writeUInt32BE(json.length, 1);
      json.copy(envelope, 5);
      res.writeHead(200, { ...close, "content-type": type });
      res.end(envelope);
    } else {
      res.writeHead(401, { ...close, "content-type": "application/json" });
      res.end(JSON.stringify({ code: "unauthenticated", message: problem }));
    }
    return true;
  };
}

/** Client interceptor adding `authorization: Bearer <token>` to every call. */
export function bearerTokenClientInterceptor(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return await next(req);
  };
}
