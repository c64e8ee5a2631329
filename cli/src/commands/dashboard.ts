import { startDashboard } from "@idpo/dashboard";
import { ConfigError } from "@idpo/runtime";
import { Command, InvalidArgumentError } from "commander";
import { UsageError } from "../errors.js";

function parsePort(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n > 65535) throw new InvalidArgumentError("expected a port number in [0, 65535]");
  return n;
}

/** `idpo dashboard`: serves the run dashboard for the services at IDPO_<SERVICE>_ADDR, until SIGTERM/SIGINT. */
export function dashboardCommand(): Command {
  return new Command("dashboard")
    .description(
      "serve the run dashboard (runs, curves, sample grids, the Improver) in the browser; it calls the services " +
        "at IDPO_<SERVICE>_ADDR over gRPC-Web",
    )
    .option(
      "--port <port>",
      "port to listen on (default IDPO_DASHBOARD_PORT or 8080; 0 picks a free one)",
      parsePort,
    )
    .option("--host <host>", "interface to bind", "127.0.0.1")
    .action(async (opts: { port?: number; host: string }) => {
      let dashboard: Awaited<ReturnType<typeof startDashboard>>;
      try {
        dashboard = await startDashboard({ host: opts.host, port: opts.port });
      } catch (err) {
        if (err instanceof ConfigError) throw new UsageError(err.message);
        throw err;
      }
      process.stdout.write(`dashboard: ${dashboard.url}\n`);
      const stop = () => void dashboard.close().finally(() => process.exit(0));
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
}
