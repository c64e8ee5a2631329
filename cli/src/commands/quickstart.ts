import { join } from "node:path";
import { rewardTable } from "@idpo/local-mesh";
import { Command } from "commander";
import { intArg, withDashboardOptions } from "../args.js";
import { QUICKSTART_DEFAULTS } from "../quickstart/quickstart-config.js";
import { runQuickstart } from "../quickstart/run-quickstart.js";
import { buildRunConfig } from "./run.js";

/** `idpo quickstart`: the whole loop in one process on the embedded bus, with a report. */
export function quickstartCommand(): Command {
  return withDashboardOptions(new Command("quickstart"))
    .description(
      "run the whole mesh in this process (embedded bus, real gRPC on loopback) and a small iterative DPO run " +
        "on the shapes world, with live progress and a report folder",
    )
    .option("--out <dir>", "report folder", "./idpo-quickstart-report")
    .option(
      "--data-dir <dir>",
      "bus and artifact directory (default a fresh temporary directory; reuse one to resume)",
    )
    .option("--iterations <k>", "iterations K", intArg("--iterations", 1, 10), QUICKSTART_DEFAULTS.iterations)
    .option(
      "--pairs <n>",
      "online pairs per iteration",
      intArg("--pairs", 1, 4096),
      QUICKSTART_DEFAULTS.pairs,
    )
    .option("--seed <n>", "master seed", intArg("--seed", 0, 2 ** 31 - 1), QUICKSTART_DEFAULTS.seed)
    .option(
      "--from-scratch",
      "train a tiny base and improver here instead of starting from the shipped shapes16 pair (models/shapes16)",
    )
    .option(
      "--config <file>",
      "a RunConfig as protobuf JSON instead of the quickstart's own (its iterations, pairs and seed win over the flags)",
    )
    .action(
      async (opts: {
        out: string;
        dataDir?: string;
        iterations: number;
        pairs: number;
        seed: number;
        dashboard: boolean;
        dashboardPort: number;
        fromScratch?: boolean;
        config?: string;
      }) => {
        const { dashboard, dashboardPort, config: file, ...settings } = opts;
        const config = file ? buildRunConfig({ config: file, fromScratch: true }) : undefined;
        if (config) {
          settings.iterations = config.iterations;
          settings.pairs = config.pairsPerIteration;
          settings.seed = Number(config.seed);
        }
        const res = await runQuickstart(
          { ...settings, config, dashboardPort: dashboard ? dashboardPort : false },
          {
            err: (t) => process.stderr.write(t),
            tty: process.stderr.isTTY === true,
          },
        );
        process.stdout.write(`${rewardTable(res.run)}\n\n`);
        process.stdout.write(
          `quickstart finished in ${Math.round(res.wallSeconds)} s; report: ${res.reportDir}\n`,
        );
        for (const f of [...res.files, join(res.reportDir, "services.log")]) process.stdout.write(`  ${f}\n`);
      },
    );
}
