import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ControllerService, ImproverService, TrainerService } from "@idpo/proto";

const TOKEN_KEY = "idpo.dashboard.token";

/** The bearer token the dashboard sends (kept in this browser's local storage), or "". */
export function token(): string {
  return localStorage.getItem(TOKEN_KEY) ?? "";
}

/** Sets (or with "" clears) the bearer token. */
export function setToken(value: string): void {
  if (value === "") localStorage.removeItem(TOKEN_KEY);
  else localStorage.setItem(TOKEN_KEY, value);
}

/** Adds `authorization: Bearer <token>` to every call when a token is set; the services check it. */
const bearer: Interceptor = (next) => async (req) => {
  const t = token();
  if (t !== "") req.header.set("authorization", `Bearer ${t}`);
  return next(req);
};

/** gRPC-Web to the dashboard's own origin, which forwards each call to the service that owns it. */
const transport = createGrpcWebTransport({ baseUrl: location.origin, interceptors: [bearer] });

export const controller = createClient(ControllerService, transport);
export const trainer = createClient(TrainerService, transport);
export const improver = createClient(ImproverService, transport);

/** One line for an error of a call: its gRPC code and the service's message. */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  const hint = e.code === Code.Unauthenticated ? " (set a bearer token at the top right)" : "";
  return `${Code[e.code] ?? e.code}: ${e.rawMessage}${hint}`;
}
