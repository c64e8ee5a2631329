import { join } from "node:path";
import { runBenchPaper } from "@idpo/bench-paper";
import { Command, InvalidArgumentError } from "commander";
import { withDashboardOptions } from "../args.js";
import { UsageError } from "../errors.js";

function parseSeeds(v: string): number[] {
  const parts = v.split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const p of parts) {
    if (!/^\d+$/.test(p) || Number(p) > 2 ** 31 - 1) {
      throw new InvalidArgumentError(
        `expected a seed or a comma-separated list of seeds (integers in [0, 2^31)), got "${v}"`,
      );
    }
    out.push(Number(p));
  }
  if (new Set(out).size !== out.length) throw new InvalidArgumentError(`seeds repeat in "${v}"`);
  return out;
}

/** `idpo bench …`: benchmarks that reproduce the paper's claims on the shapes world. */
export function benchCommand(): Command {
  const bench = new Command("bench").description("benchmarks: the paper's claims on the shapes world");
  withDashboardOptions(bench.command("paper"))
    .description(
      "train base, improver, SFT, offline DPO, SPIN and ours through the mesh, evaluate them on train and held-out " +
        "prompts, search what makes the iterative method work, and write RESULTS.md (resumes where it stopped)",
    )
    .option("--quick", "the tiny preset from scratch, small everywhere (a smoke test of the pipeline)")
    .option(
      "--from-scratch",
      "train the base and improvement model for each seed by their recipes instead of starting from the shipped models/shapes16 (about an hour more per seed)",
    )
    .option(
      "--seed <n[,m...]>",
      "master seed(s); the first seed's results are the report's tables",
      parseSeeds,
      [1],
    )
    .option(
      "--out <dir>",
      "report directory (RESULTS.md, or RESULTS-<config>.md for --quick/--from-scratch; figures under results/<config>/)",
      "docs",
    )
    .option(
      "--data-dir <dir>",
      "embedded bus and benchmark state (default $IDPO_DATA_DIR/bench-paper or .idpo/bench-paper)",
    )
    .option(
      "--seeds-from <path>",
      "data dir of another invocation of the same config (e.g. a second seed run in parallel), or a seed file a report wrote (results/<config>/seeds/seed-N.json); its finished seeds join the seed-noise section (repeatable)",
      (v: string, prev: string[]) => [...prev, v],
      [] as string[],
    )
    .action(
      async (opts: {
        dashboard: boolean;
        dashboardPort: number;
        quick?: boolean;
        fromScratch?: boolean;
        seed: number[];
        out: string;
        dataDir?: string;
        seedsFrom: string[];
      }) => {
        if (opts.quick && opts.fromScratch)
          throw new UsageError("--quick and --from-scratch exclude each other (--quick trains from scratch)");
        const config = opts.quick ? "quick" : opts.fromScratch ? "scratch" : "default";
        const dataDir = opts.dataDir ?? join(process.env.IDPO_DATA_DIR || ".idpo", "bench-paper", config);
        const command = [
          "idpo",
          "bench",
          "paper",
          ...process.argv.slice(process.argv.indexOf("paper") + 1),
        ].join(" ");
        await runBenchPaper(
          {
            config,
            seeds: opts.seed,
            out: opts.out,
            dataDir,
            command,
            seedDataDirs: opts.seedsFrom,
            dashboardPort: opts.dashboard ? opts.dashboardPort : false,
          },
          (s) => process.stderr.write(s),
        );
      },
    );
  return bench;
}
