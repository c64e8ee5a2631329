import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decodePng, readPairManifest } from "@idpo/data";
import { pickAPicFixtureRows, writePickAPicFixture } from "@idpo/data/test-fixtures";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DataIo, dataCommand, runDataPickapic, runDataShapes, runDataStats } from "./data.js";

function capture(): DataIo & { outLines: string[]; errLines: string[] } {
  const outLines: string[] = [];
  const errLines: string[] = [];
  return { outLines, errLines, out: (l) => outLines.push(l), err: (l) => errLines.push(l) };
}

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "idpo-cli-data-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("idpo data", () => {
  it("shapes writes a dataset and stats prints its reward distribution and writes the two PNGs", async () => {
    const dir = join(root, "shapes");
    const io = capture();
    await runDataShapes({ pairs: 1200, size: 16, seed: 4, out: dir }, io);
    expect(io.outLines[0]).toMatch(/^wrote 1200 pairs \(16x16, train prompts, seed 4\)/);
    expect(io.errLines.at(-1)).toMatch(/^shapes: 1200\/1200 pairs/);
    expect((await readPairManifest(dir)).count).toBe(1200);

    const st = capture();
    const res = await runDataStats(dir, {}, st);
    const text = st.outLines.join("\n");
    expect(res.count).toBe(1200);
    expect(text).toMatch(/1200 pairs, 16x16, source shapes, seed 4/);
    expect(text).toMatch(/winner reward p5 \/ p50 \/ p95: 0\.\d{3} \/ 0\.\d{3} \/ 0\.\d{3}/);
    expect(text).toMatch(/\[0\.95, 1\.00\]/);
    expect(res.winner && res.winner[2] - res.winner[0]).toBeGreaterThanOrEqual(0.2);
    expect(res.files).toEqual([join(dir, "winner-reward-hist.png"), join(dir, "sample-pairs.png")]);
    expect(text).toContain(`wrote ${join(dir, "winner-reward-hist.png")}`);
    const hist = decodePng(readFileSync(join(dir, "winner-reward-hist.png")));
    expect([hist.width, hist.height]).toEqual([560, 320]);
    // 16 pairs in 2 blocks of 8 columns, winners above losers: 4 rows of 64-pixel cells, 2 pixels of padding.
    const grid = decodePng(readFileSync(join(dir, "sample-pairs.png")));
    expect([grid.width, grid.height]).toEqual([2 + 8 * 66, 2 + 4 * 66]);
  });

  it("pickapic converts fixture shards and stats handles a dataset without rewards", async () => {
    const shards = join(root, "pap");
    await mkdir(shards);
    const rows = pickAPicFixtureRows(12, 5);
    await writePickAPicFixture(join(shards, "a.parquet"), rows, { rowGroupSize: 4 });
    const out = join(root, "pap-out");
    const io = capture();
    const stats = await runDataPickapic({ in: [shards], size: 8, out }, io);
    const pairs = rows.filter((r) => r.expect === "winner0" || r.expect === "winner1").length;
    expect(stats.pairs).toBe(pairs);
    const ties = rows.filter((r) => r.expect === "tie").length;
    const corrupt = rows.length - pairs - ties;
    expect(io.outLines[0]).toMatch(
      new RegExp(
        `^wrote ${pairs} pairs \\(8x8\\) .* 12 rows: ${ties} ties dropped, ${corrupt} corrupt rows skipped`,
      ),
    );
    expect(io.errLines.length).toBe(3);
    const st = capture();
    const res = await runDataStats(out, { samples: 4 }, st);
    expect(res.winner).toBeNull();
    expect(st.outLines.join("\n")).toMatch(/no rewards stored \(source pickapic\)/);
    expect(existsSync(join(out, "sample-pairs.png"))).toBe(true);
    expect(existsSync(join(out, "winner-reward-hist.png"))).toBe(false);
  });

  it("rejects bad arguments with clear messages", async () => {
    const run = async (args: string[]) => {
      const errors: string[] = [];
      const cmd = dataCommand();
      cmd.exitOverride().configureOutput({ writeErr: (s) => errors.push(s), writeOut: () => {} });
      for (const sub of cmd.commands)
        sub.exitOverride().configureOutput({ writeErr: (s) => errors.push(s), writeOut: () => {} });
      await expect(cmd.parseAsync(args, { from: "user" })).rejects.toThrow();
      return errors.join("");
    };
    expect(await run(["shapes", "--pairs", "ten", "--out", join(root, "x")])).toMatch(
      /--pairs must be an integer, got "ten"/,
    );
    expect(await run(["shapes", "--pairs", "10", "--size", "2", "--out", join(root, "x")])).toMatch(
      /--size must be in \[4, 4096\]/,
    );
    expect(await run(["shapes", "--pairs", "10"])).toMatch(/required option '--out <dir>'/);
    expect(await run(["pickapic", "--in", "x", "--out", "y"])).toMatch(/required option '--size <s>'/);
    await expect(
      runDataShapes({ pairs: 5, size: 8, seed: 0, out: join(root, "y"), split: "dev" as "train" }, capture()),
    ).rejects.toThrow(/--split must be train, test or all/);
    await expect(runDataStats(join(root, "nope"), {}, capture())).rejects.toThrow(
      /not a complete pair dataset/,
    );
    await expect(
      runDataPickapic({ in: [join(root, "missing")], size: 8, out: join(root, "z") }, capture()),
    ).rejects.toThrow(/does not exist/);
  });
});
