import { readFileSync } from "node:fs";
import {
  type ConnectionOptions,
  connect,
  credsAuthenticator,
  type NatsConnection,
} from "@nats-io/transport-node";
import { BusConfigError } from "../errors.js";

/** How to reach and authenticate to NATS. */
export interface NatsConnectOptions {
  /** One URL or a comma-separated list; `nats://user:pass@host:port` carries user/password auth. */
  url: string;
  /** NATS credentials file (JWT + nkey seed). */
  credsFile?: string;
  /** Token auth. */
  token?: string;
  /** Connection name shown by the server (monitoring, `nats server report connections`). */
  name?: string;
}

/** Split `url` into server addresses and any user/password it carries. */
export function parseServers(url: string): { servers: string[]; user?: string; pass?: string } {
  const servers: string[] = [];
  let user: string | undefined;
  let pass: string | undefined;
  for (const raw of url.split(",")) {
    const s = raw.trim();
    if (!s) continue;
    const withScheme = s.includes("://") ? s : `nats://${s}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new BusConfigError(`NATS URL "${s}" is not a valid URL (expected nats://host:port)`);
    }
    if (u.username) {
      user = decodeURIComponent(u.username);
      pass = decodeURIComponent(u.password);
    }
    servers.push(`${u.protocol}//${u.host}`);
  }
  if (servers.length === 0) throw new BusConfigError(`NATS URL "${url}" names no server`);
  return { servers, user, pass };
}

/** Connect with reconnection forever (a restarted server is picked up again) and the given auth. */
export async function connectNats(opts: NatsConnectOptions): Promise<NatsConnection> {
  const { servers, user, pass } = parseServers(opts.url);
  const co: ConnectionOptions = {
    servers,
    name: opts.name ?? "idpo-bus",
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    timeout: 5_000,
  };
  if (user !== undefined) {
    co.user = user;
    co.pass = pass;
  }
  if (opts.token) co.token = opts.token;
  if (opts.credsFile) {
    let creds: Uint8Array;
    try {
      creds = readFileSync(opts.credsFile);
    } catch (err) {
      throw new BusConfigError(
        `cannot read NATS credentials file ${opts.credsFile}: ${(err as Error).message}`,
      );
    }
    co.authenticator = credsAuthenticator(creds);
  }
  try {
    return await connect(co);
  } catch (err) {
    throw new BusConfigError(`cannot connect to NATS at ${servers.join(", ")}: ${(err as Error).message}`);
  }
}
