import { lookup } from "node:dns/promises";
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "@idpo/proto";
import { bearerTokenClientInterceptor } from "./auth.js";
import { clientTracingInterceptor } from "./rpc-tracing.js";

/** Default ports of the five services and of the inference sidecar. */
export const DEFAULT_PORTS = {
  generator: 50051,
  improver: 50052,
  trainer: 50053,
  scorer: 50054,
  controller: 50055,
  inference: 50056,
} as const;

/** A service name of the mesh. */
export type MeshService = keyof typeof DEFAULT_PORTS;

/**
 * The address of peer `service`: IDPO_<SERVICE>_ADDR, else http://127.0.0.1:<default port>.
 * Forms: `http://host:port`, `https://host:port`, or `dns:///host:port` to balance across every
 * address `host` resolves to (a Kubernetes headless Service).
 */
export function peerAddress(
  service: MeshService,
  env: Record<string, string | undefined> = process.env,
): string {
  const v = env[`IDPO_${service.toUpperCase()}_ADDR`]?.trim();
  if (v) return v;
  return `http://127.0.0.1:${DEFAULT_PORTS[service]}`;
}

/** Options of `createPeerTransport`. */
export interface PeerTransportOptions {
  /** Bearer token sent with every call; default IDPO_AUTH_TOKEN when set. */
  token?: string;
  /** Largest message in bytes; default 64 MiB. */
  maxMessageBytes?: number;
  /** Extra client interceptors. */
  interceptors?: Interceptor[];
  /** How often a balanced transport re-resolves and health-checks its endpoints, ms; default 5000. */
  refreshMs?: number;
}

function singleTransport(baseUrl: string, opts: PeerTransportOptions): Transport {
  const interceptors: Interceptor[] = [clientTracingInterceptor(), ...(opts.interceptors ?? [])];
  if (opts.token) interceptors.unshift(bearerTokenClientInterceptor(opts.token));
  const max = opts.maxMessageBytes ?? 64 * 1024 * 1024;
  return createGrpcTransport({ baseUrl, interceptors, readMaxBytes: max, writeMaxBytes: max });
}

/**
 * A gRPC transport to `address` (see `peerAddress` for the forms). A `dns:///` address gives a transport
 * that spreads calls round-robin over every resolved replica whose health is SERVING.
 */
export function createPeerTransport(
  address: string,
  opts: PeerTransportOptions = {},
): Transport & { close(): void } {
  if (address.startsWith("dns:///")) return new BalancedTransport(address, opts);
  let url: URL;
  try {
    url = new URL(address);
  } catch {
    throw new Error(
      `invalid peer address ${JSON.stringify(address)}: expected http://host:port or dns:///host:port`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new Error(`invalid peer address ${JSON.stringify(address)}: expected http://, https:// or dns:///`);
  }
  const t = singleTransport(address, opts);
  return Object.assign(t, { close: () => {} });
}

interface Endpoint {
  transport: Transport;
  serving: boolean;
}

/** Client-side load balancing over the A records of a (headless) DNS name, health-checked. */
class BalancedTransport implements Transport {
  private readonly host: string;
  private readonly port: number;
  private endpoints = new Map<string, Endpoint>();
  private next = 0;
  private refreshing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly address: string,
    private readonly opts: PeerTransportOptions,
  ) {
    const m = /^dns:\/\/\/([^:/]+):(\d+)$/.exec(address);
    if (!m) throw new Error(`invalid peer address ${JSON.stringify(address)}: expected dns:///host:port`);
    this.host = m[1];
    this.port = Number(m[2]);
    this.timer = setInterval(() => void this.refresh(), opts.refreshMs ?? 5000);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }

  /** Re-resolves the name and health-checks every address. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const addrs = await lookup(this.host, { all: true });
        const next = new Map<string, Endpoint>();
        for (const a of addrs) {
          const base =
            a.family === 6 ? `http://[${a.address}]:${this.port}` : `http://${a.address}:${this.port}`;
          next.set(
            base,
            this.endpoints.get(base) ?? { transport: singleTransport(base, this.opts), serving: false },
          );
        }
        this.endpoints = next;
        await Promise.all(
          [...next.values()].map(async (ep) => {
            try {
              const res = await createClient(Health, ep.transport).check({}, { timeoutMs: 2000 });
              ep.serving = res.status === HealthCheckResponse_ServingStatus.SERVING;
            } catch {
              ep.serving = false;
            }
          }),
        );
      } catch {
        // Resolution failures keep the previous endpoints; calls fail with UNAVAILABLE if none is ready.
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private async pick(): Promise<Transport> {
    let ready = [...this.endpoints.values()].filter((e) => e.serving);
    if (ready.length === 0) {
      await this.refresh();
      ready = [...this.endpoints.values()].filter((e) => e.serving);
    }
    if (ready.length === 0) {
      throw new ConnectError(`no ready replica behind ${this.address}`, Code.Unavailable);
    }
    this.next = (this.next + 1) % ready.length;
    return ready[this.next].transport;
  }

  unary: Transport["unary"] = async (...args) => (await this.pick()).unary(...args);
  stream: Transport["stream"] = async (...args) => (await this.pick()).stream(...args);
}
