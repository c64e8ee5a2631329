import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "@idpo/proto";

export { ServingStatus };

/**
 * Serving status per service name, as grpc.health.v1 reports it. The empty name is the whole server.
 * Everything starts NOT_SERVING; a service calls `setServing(true)` once its weights are loaded.
 */
export class HealthRegistry {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly listeners = new Set<() => void>();
  private closed = false;

  constructor(services: readonly string[] = []) {
    this.statuses.set("", ServingStatus.NOT_SERVING);
    for (const s of services) this.statuses.set(s, ServingStatus.NOT_SERVING);
  }

  /** Sets one service's status (and keeps the server's overall status = all services serving). */
  set(service: string, serving: boolean): void {
    this.statuses.set(service, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    if (service !== "") {
      const all = [...this.statuses.entries()]
        .filter(([k]) => k !== "")
        .every(([, v]) => v === ServingStatus.SERVING);
      this.statuses.set("", all ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    }
    this.notify();
  }

  /** Sets every registered service (and the overall status). */
  setAll(serving: boolean): void {
    for (const k of this.statuses.keys()) {
      this.statuses.set(k, serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING);
    }
    this.notify();
  }

  /** Reports NOT_SERVING everywhere and ends every Watch stream (used at shutdown). */
  close(): void {
    this.closed = true;
    this.setAll(false);
  }

  /** True once `close` was called. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** The status of `service`, or undefined when it is not registered. */
  get(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Calls `fn` on every change; returns the unsubscribe function. */
  onChange(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private notify(): void {
    for (const fn of this.listeners) fn();
  }
}

/** Routes for grpc.health.v1.Health backed by `registry`. */
export function healthRoutes(registry: HealthRegistry) {
  return (router: ConnectRouter) =>
    router.service(Health, {
      check(req) {
        const status = registry.get(req.service);
        if (status === undefined) {
          throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
        }
        return { status };
      },
      async *watch(req, ctx) {
        // `dirty` records changes that happen while the generator is suspended at a yield.
        let dirty = true;
        let wake: (() => void) | undefined;
        const poke = () => {
          dirty = true;
          wake?.();
        };
        const off = registry.onChange(poke);
        ctx.signal.addEventListener("abort", poke);
        try {
          let last: ServingStatus | undefined;
          while (!ctx.signal.aborted) {
            if (!dirty) {
              await new Promise<void>((resolve) => {
                wake = resolve;
              });
              wake = undefined;
              continue;
            }
            dirty = false;
            const status = registry.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN;
            if (status !== last) {
              last = status;
              yield { status };
            }
            if (registry.isClosed) return;
          }
        } finally {
          off();
          ctx.signal.removeEventListener("abort", poke);
        }
      },
    });
}
