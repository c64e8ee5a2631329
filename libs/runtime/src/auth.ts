import { timingSafeEqual } from "node:crypto";
import { readFileSync } from "node:fs";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";

/** Services reachable without a token: health must stay open for probes and load balancers. */
const OPEN_SERVICES = new Set(["grpc.health.v1.Health"]);

/** Reads bearer tokens from a file: one per line, blank lines and `#` comments ignored. */
export function readTokensFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new Error(`cannot read IDPO_AUTH_TOKENS_FILE ${path}: ${(err as Error).message}`);
  }
  const tokens = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (tokens.length === 0) throw new Error(`IDPO_AUTH_TOKENS_FILE ${path} holds no token`);
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

/** Server interceptor: every call except health needs `authorization: Bearer <token>` with a known token. */
export function bearerAuthInterceptor(tokens: readonly string[]): Interceptor {
  const known = tokens.map((t) => Buffer.from(t));
  return (next) => async (req) => {
    if (OPEN_SERVICES.has(req.service.typeName)) return await next(req);
    const header = req.header.get("authorization");
    if (header === null) {
      throw new ConnectError("missing authorization header (expected: Bearer <token>)", Code.Unauthenticated);
    }
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!m || !constantTimeIncludes(known, m[1])) {
      throw new ConnectError("invalid bearer token", Code.Unauthenticated);
    }
    return await next(req);
  };
}

/** Client interceptor adding `authorization: Bearer <token>` to every call. */
export function bearerTokenClientInterceptor(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return await next(req);
  };
}
