import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { configHash, type PaperConfig } from "./config.js";
import type { SeedRun } from "./report.js";
import type { PaperResults } from "./results.js";

/**
 * One seed's full results as the report commits them (`results/<config>/seeds/seed-<n>.json`), so that a
 * seed measured in one invocation can join the seed-noise section of a later one (`--seeds-from`).
 */
export interface SeedFile {
  /** Configuration name. */
  config: string;
  /** configHash of the configuration that produced the results. */
  configHash: string;
  seed: number;
  results: PaperResults;
}

/** The seed file of one finished seed. */
export function seedFile(cfg: PaperConfig, run: SeedRun): SeedFile {
  return { config: cfg.name, configHash: configHash(cfg), seed: run.seed, results: run.results };
}

/** Its path under the report directory. */
export function seedFilePath(out: string, cfg: PaperConfig, seed: number): string {
  return join(out, "results", cfg.name, "seeds", `seed-${seed}.json`);
}

/**
 * The finished seeds of `cfg` found at `source`: a benchmark data directory (its seeds of another
 * configuration hash are skipped, since their state belongs to an older configuration), or a seed file,
 * which must match `cfg` exactly.
 */
export async function readSeedRuns(source: string, cfg: PaperConfig): Promise<SeedRun[]> {
  let isFile = false;
  try {
    isFile = (await stat(source)).isFile();
  } catch {
    throw new Error(`--seeds-from ${source}: no such data directory or seed file`);
  }
  return isFile ? [await readSeedFile(source, cfg)] : dataDirSeeds(source, cfg);
}

async function readSeedFile(path: string, cfg: PaperConfig): Promise<SeedRun> {
  let file: Partial<SeedFile>;
  try {
    file = JSON.parse(await readFile(path, "utf8")) as Partial<SeedFile>;
  } catch (e) {
    throw new Error(`seed file ${path}: not readable JSON (${(e as Error).message})`);
  }
  if (!Number.isInteger(file.seed) || typeof file.results !== "object" || file.results == null) {
    throw new Error(`seed file ${path}: needs an integer "seed" and a "results" object`);
  }
  const hash = configHash(cfg);
  if (file.config !== cfg.name || file.configHash !== hash) {
    throw new Error(
      `seed file ${path}: measured with config "${file.config}" (${file.configHash}), this run is "${cfg.name}" ` +
        `(${hash}); seeds of different configurations do not compare`,
    );
  }
  return { seed: file.seed as number, results: file.results as PaperResults };
}

async function dataDirSeeds(dataDir: string, cfg: PaperConfig): Promise<SeedRun[]> {
  const root = join(dataDir, "bench-paper");
  let names: string[] = [];
  try {
    names = await readdir(root);
  } catch {
    return [];
  }
  const out: SeedRun[] = [];
  const hash = configHash(cfg);
  for (const n of names) {
    const m = new RegExp(`^${cfg.name}-s(\\d+)$`).exec(n);
    if (!m) continue;
    try {
      const state = JSON.parse(await readFile(join(root, n, "state.json"), "utf8")) as { configHash: string };
      if (state.configHash !== hash) continue;
      const results = JSON.parse(await readFile(join(root, n, "results.json"), "utf8")) as PaperResults;
      out.push({ seed: Number(m[1]), results });
    } catch {
      // An unfinished seed has no results.json yet.
    }
  }
  return out.sort((a, b) => a.seed - b.seed);
}
