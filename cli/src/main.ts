import { Command, CommanderError } from "commander";
import { benchCommand } from "./commands/bench.js";
import { dashboardCommand } from "./commands/dashboard.js";
import { dataCommand } from "./commands/data.js";
import { improveCommand } from "./commands/improve.js";
import { quickstartCommand } from "./commands/quickstart.js";
import { runCommand } from "./commands/run.js";
import { serveCommand } from "./commands/serve.js";
import { UsageError } from "./errors.js";

/** Builds the `idpo` command tree. */
export function program(): Command {
  const p = new Command("idpo")
    .description(
      "Iterative DPO for text-to-image diffusion with a learned improvement model, as a gRPC mesh over NATS JetStream.",
    )
    .version("0.1.0")
    .showHelpAfterError("(run with --help for usage)");
  p.addCommand(serveCommand());
  p.addCommand(dataCommand());
  p.addCommand(quickstartCommand());
  p.addCommand(runCommand());
  p.addCommand(improveCommand());
  p.addCommand(benchCommand());
  p.addCommand(dashboardCommand());
  return p;
}

/** Runs the CLI; errors print one line and exit non-zero. */
export async function main(argv: string[]): Promise<void> {
  // `idpo … | head` closes stdout early: that is not an error.
  process.stdout.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") process.exit(0);
    throw err;
  });
  const p = program();
  p.exitOverride();
  try {
    await p.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exit(err.exitCode);
    }
    process.stderr.write(`idpo: ${(err as Error).message}\n`);
    process.exit(err instanceof UsageError ? 2 : 1);
  }
}
