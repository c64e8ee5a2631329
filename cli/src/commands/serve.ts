import { loadService, SERVICE_NAMES, type ServiceName } from "@idpo/local-mesh";
import { ConfigError, runServices } from "@idpo/runtime";
import { Command, InvalidArgumentError } from "commander";
import { UsageError } from "../errors.js";

function parsePort(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError("expected a port number in [0, 65535]");
  return n;
}

/** `idpo serve <service|all>`: starts services on their ports with health served, until SIGTERM/SIGINT. */
export function serveCommand(): Command {
  return new Command("serve")
    .description("start one service (generator, improver, trainer, scorer, controller) or all of them")
    .argument("<service>", `one of ${SERVICE_NAMES.join(", ")}, or all`)
    .option(
      "--port <port>",
      "port to listen on (one service only; default IDPO_PORT or the service's port)",
      parsePort,
    )
    .option("--host <host>", "interface to bind (default IDPO_HOST or 0.0.0.0)")
    .action(async (service: string, opts: { port?: number; host?: string }) => {
      const names: ServiceName[] =
        service === "all"
          ? [...SERVICE_NAMES]
          : (SERVICE_NAMES as readonly string[]).includes(service)
            ? [service as ServiceName]
            : [];
      if (names.length === 0) {
        throw new UsageError(
          `unknown service "${service}": expected one of ${SERVICE_NAMES.join(", ")}, all`,
        );
      }
      if (opts.port !== undefined && names.length > 1) {
        throw new UsageError("--port applies to one service; use IDPO_<SERVICE>_PORT with all");
      }
      const defs = await Promise.all(names.map(loadService));
      try {
        const servers = await runServices(defs, {
          config: {
            ...(opts.port !== undefined ? { port: opts.port } : {}),
            ...(opts.host ? { host: opts.host } : {}),
          },
        });
        for (let i = 0; i < servers.length; i++) {
          process.stdout.write(`${names[i]} listening on ${servers[i].url}\n`);
        }
      } catch (err) {
        if (err instanceof ConfigError) throw new UsageError(err.message);
        throw err;
      }
    });
}
