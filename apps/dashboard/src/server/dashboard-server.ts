import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { envInt, type Logger, type MeshService, peerAddress } from "@idpo/runtime";
import { buildDashboardBundle, type DashboardBundle } from "./bundle.js";
import { forwardCall, peerOfPath, proxyBaseUrl } from "./proxy.js";

/** Default port of the dashboard (IDPO_DASHBOARD_PORT). */
export const DASHBOARD_DEFAULT_PORT = 8080;

/** Options of {@link startDashboard}. */
export interface DashboardOptions {
  /** Interface to bind; default 127.0.0.1 (the dashboard can cancel and create runs). */
  host?: string;
  /** Port; default IDPO_DASHBOARD_PORT or 8080; 0 picks a free one. */
  port?: number;
  /** Where each service is; default IDPO_<SERVICE>_ADDR or its default port on 127.0.0.1. */
  peers?: Partial<Record<MeshService, string>>;
  /** Request and proxy errors. */
  logger?: Logger;
  /** Environment read for the port and peer addresses; default process.env. */
  env?: Record<string, string | undefined>;
}

/** A listening dashboard. */
export interface RunningDashboard {
  /** http://host:port/ */
  url: string;
  /** Stops listening and ends open calls (e.g. WatchRun streams). */
  close(): Promise<void>;
}

const SECURITY_HEADERS = {
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  // Only this origin's script and style; images are blob: URLs made from PNG bytes the services return.
  "content-security-policy":
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; object-src 'none'",
};

function sendFile(res: ServerResponse, type: string, body: string) {
  res.writeHead(200, { "content-type": type, "cache-control": "no-cache", ...SECURITY_HEADERS });
  res.end(body);
}

/**
 * Serves the run dashboard: the single-page app (bundled at start) on GET, and the services' gRPC-Web and
 * Connect calls on POST `/<package>.<Service>/<Method>`, forwarded unchanged to the service that owns them.
 * The browser thus talks to the mesh with the generated clients through one origin, and the services' bearer
 * auth applies to it as to any client.
 */
export async function startDashboard(opts: DashboardOptions = {}): Promise<RunningDashboard> {
  const env = opts.env ?? process.env;
  const port = opts.port ?? envInt(env, "IDPO_DASHBOARD_PORT", DASHBOARD_DEFAULT_PORT, 0, 65535);
  const host = opts.host ?? "127.0.0.1";
  const bases = new Map<MeshService, URL>();
  const baseOf = (service: MeshService): URL => {
    let url = bases.get(service);
    if (!url) {
      url = proxyBaseUrl(opts.peers?.[service] ?? peerAddress(service, env));
      bases.set(service, url);
    }
    return url;
  };
  const bundle: DashboardBundle = await buildDashboardBundle();

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "POST") {
      const service = peerOfPath(path);
      if (!service) {
        res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end(`no service serves ${path}`);
        return;
      }
      forwardCall(req, res, baseOf(service), (err) =>
        opts.logger?.warn("dashboard: call to a service failed", { path, service, error: err.message }),
      );
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD, POST" }).end();
      return;
    }
    if (path === "/" || path === "/index.html") return sendFile(res, "text/html; charset=utf-8", bundle.html);
    if (path === "/app.js") return sendFile(res, "text/javascript; charset=utf-8", bundle.js);
    if (path === "/app.css") return sendFile(res, "text/css; charset=utf-8", bundle.css);
    res.writeHead(404, { "content-type": "text/plain; charset=utf-8" }).end(`not found: ${path}`);
  };

  const server = createServer(handle);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shown = host === "0.0.0.0" || host === "::" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${shown}:${addr.port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
