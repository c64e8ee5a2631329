import { resolve } from "node:path";
import { openEmbeddedBus } from "./embedded/embedded-bus.js";
import { BusConfigError } from "./errors.js";
import { type BusLimits, busDefinitions } from "./nats/definitions.js";
import { openNatsBus } from "./nats/nats-bus.js";
import type { Bus } from "./types.js";

/** Options of {@link openBus}; every field falls back to an environment variable, then a default. */
export interface OpenBusOptions {
  /** NATS server URL(s), comma-separated; `nats://user:pass@host:4222` for user/password auth.
   * Env `IDPO_NATS_URL`. Unset → the embedded backend. */
  natsUrl?: string;
  /** Directory of the embedded backend. Env `IDPO_DATA_DIR`, default `./.idpo`. */
  dataDir?: string;
  /** Prefix isolating this bus's streams, buckets and subjects ([A-Za-z0-9_-]+). Env `IDPO_BUS_PREFIX`. */
  namePrefix?: string;
  /** NATS credentials file. Env `IDPO_NATS_CREDS_FILE`. */
  credsFile?: string;
  /** NATS token. Env `IDPO_NATS_TOKEN`. */
  token?: string;
  /** Connection name shown by the NATS server. */
  connectionName?: string;
  /** Overrides of the definitions' limits (timings, sizes). Env `IDPO_NATS_REPLICAS` sets `replicas`. */
  limits?: Partial<BusLimits>;
  /** Force a backend regardless of `natsUrl`. */
  backend?: "nats" | "embedded";
}

function envInt(name: string): number | undefined {
  const v = process.env[name];
  if (v === undefined || v === "") return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1)
    throw new BusConfigError(`${name} must be a positive integer, got "${v}"`);
  return n;
}

/**
 * Open the bus: NATS JetStream when a NATS URL is given (option or `IDPO_NATS_URL`), else the embedded
 * directory-backed backend under `dataDir`. Both have the same semantics.
 */
export async function openBus(opts: OpenBusOptions = {}): Promise<Bus> {
  const env = process.env;
  const natsUrl = opts.natsUrl ?? (env.IDPO_NATS_URL || undefined);
  const prefix = opts.namePrefix ?? env.IDPO_BUS_PREFIX ?? "";
  const replicas = envInt("IDPO_NATS_REPLICAS");
  const limits: Partial<BusLimits> = { ...(replicas ? { replicas } : {}), ...(opts.limits ?? {}) };
  const defs = busDefinitions(prefix, limits);
  const backend = opts.backend ?? (natsUrl ? "nats" : "embedded");
  if (backend === "nats") {
    if (!natsUrl) throw new BusConfigError("the NATS backend needs a URL: set natsUrl or IDPO_NATS_URL");
    return openNatsBus(
      {
        url: natsUrl,
        credsFile: opts.credsFile ?? (env.IDPO_NATS_CREDS_FILE || undefined),
        token: opts.token ?? (env.IDPO_NATS_TOKEN || undefined),
        name: opts.connectionName,
      },
      defs,
    );
  }
  const dataDir = resolve(opts.dataDir ?? (env.IDPO_DATA_DIR || "./.idpo"));
  return openEmbeddedBus(dataDir, defs);
}
