import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { configHash, paperConfig } from "./config.js";
import type { PaperResults } from "./results.js";
import { readSeedRuns, seedFile, seedFilePath } from "./seed-runs.js";

function results(marker: string): PaperResults {
  return { models: {}, mainRows: [marker], series: [], pairSizes: [], trainMetrics: {} };
}

describe("seed runs from data directories and committed seed files", () => {
  const cfg = paperConfig("quick");

  it("reads back a seed file written for the same configuration", async () => {
    const out = await mkdtemp(join(tmpdir(), "idpo-seeds-"));
    const path = seedFilePath(out, cfg, 3);
    expect(path).toBe(join(out, "results", "quick", "seeds", "seed-3.json"));
    await mkdir(join(out, "results", "quick", "seeds"), { recursive: true });
    await writeFile(path, JSON.stringify(seedFile(cfg, { seed: 3, results: results("a") })));
    const runs = await readSeedRuns(path, cfg);
    expect(runs).toEqual([{ seed: 3, results: results("a") }]);
  });

  it("refuses a seed file of another configuration, naming both hashes", async () => {
    const dir = await mkdtemp(join(tmpdir(), "idpo-seeds-"));
    const other = { ...paperConfig("quick"), offlinePairs: 501 };
    const path = join(dir, "seed-2.json");
    await writeFile(path, JSON.stringify(seedFile(other, { seed: 2, results: results("b") })));
    await expect(readSeedRuns(path, cfg)).rejects.toThrow(
      `(${configHash(other)}), this run is "quick" (${configHash(cfg)})`,
    );
  });

  it("names a missing path and a malformed seed file", async () => {
    const dir = await mkdtemp(join(tmpdir(), "idpo-seeds-"));
    await expect(readSeedRuns(join(dir, "nope"), cfg)).rejects.toThrow(/no such data directory or seed file/);
    const bad = join(dir, "bad.json");
    await writeFile(bad, JSON.stringify({ config: "quick", configHash: configHash(cfg), seed: "1" }));
    await expect(readSeedRuns(bad, cfg)).rejects.toThrow(/integer "seed" and a "results" object/);
  });

  it("takes a data directory's finished seeds of this configuration only", async () => {
    const dir = await mkdtemp(join(tmpdir(), "idpo-seeds-"));
    const seedDir = (n: number) => join(dir, "bench-paper", `quick-s${n}`);
    for (const [n, hash, done] of [
      [1, configHash(cfg), true],
      [2, "stale", true],
      [4, configHash(cfg), false],
    ] as const) {
      await mkdir(seedDir(n), { recursive: true });
      await writeFile(join(seedDir(n), "state.json"), JSON.stringify({ configHash: hash }));
      if (done) await writeFile(join(seedDir(n), "results.json"), JSON.stringify(results(`s${n}`)));
    }
    const runs = await readSeedRuns(dir, cfg);
    expect(runs.map((r) => r.seed)).toEqual([1]);
    expect(runs[0].results.mainRows).toEqual(["s1"]);
  });
});
