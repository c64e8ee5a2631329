import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ArtifactStore, type Bus, openBus } from "@idpo/bus";
import { encodePairShard, parseDataUri } from "@idpo/mesh";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { checkReachable, openPairSources } from "./pair-sources.js";

const image = (v: number) => ({ height: 4, width: 4, data: new Float32Array(48).fill(v) });

describe("artifact pair sources", () => {
  let dir: string;
  let bus: Bus;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "idpo-pair-sources-"));
    bus = await openBus({ backend: "embedded", dataDir: dir });
    for (const s of [0, 1]) {
      const records = [0, 1, 2].map((i) => ({ prompt: `p${s}${i}`, winner: image(0.5), loser: image(0.25) }));
      await bus.artifacts.put(
        `runs/r/iter-1/shard-${s}.pairs`,
        encodePairShard({ height: 4, width: 4, records }),
      );
    }
  });
  afterAll(async () => {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("read every epoch from memory after the first, so a bus outage mid-job does not stop training", async () => {
    let down = false;
    let reads = 0;
    // The store answers while the job opens its data, then goes away (a NATS restart).
    const flaky: ArtifactStore = Object.assign(Object.create(bus.artifacts), {
      get: async (name: string) => {
        if (down) throw new Error("timeout");
        reads++;
        return bus.artifacts.get(name);
      },
      list: (prefix?: string) => bus.artifacts.list(prefix),
    });
    const [source] = await openPairSources([parseDataUri("artifact://runs/r/iter-1/", "data")], {
      artifacts: flaky,
      dataDir: dir,
    });
    expect(source.count).toBe(6);
    const readsAtOpen = reads;
    down = true;
    for (let epoch = 0; epoch < 3; epoch++) {
      const prompts: string[] = [];
      for await (const r of source.records()) prompts.push(r.prompt);
      expect(prompts).toEqual(["p00", "p01", "p02", "p10", "p11", "p12"]);
    }
    expect(reads).toBe(readsAtOpen);
  });

  it("read a window of a source, wrapping past its last pair", async () => {
    const prompts = async (uri: string) => {
      const [source] = await openPairSources([parseDataUri(uri, "data")], {
        artifacts: bus.artifacts,
        dataDir: dir,
      });
      const out: string[] = [];
      for await (const r of source.records()) out.push(r.prompt);
      expect(source.count).toBe(out.length);
      return out;
    };
    expect(await prompts("artifact://runs/r/iter-1/#skip=1&take=3")).toEqual(["p01", "p02", "p10"]);
    // skip is taken modulo the 6 pairs: 10 → 4, then the window wraps to the first pair.
    expect(await prompts("artifact://runs/r/iter-1/#skip=10&take=4")).toEqual(["p11", "p12", "p00", "p01"]);
    expect(await prompts("artifact://runs/r/iter-1/#take=6")).toEqual([
      "p00",
      "p01",
      "p02",
      "p10",
      "p11",
      "p12",
    ]);
    await expect(prompts("artifact://runs/r/iter-1/#take=7")).rejects.toThrow(
      /^spec\.data\[0\]: the window takes 7 pairs but the source holds 6/,
    );
  });

  it("refuse at StartJob a window larger than a shapes source", async () => {
    await expect(
      checkReachable(
        parseDataUri("shapes://?pairs=8&size=8#skip=3&take=9", "spec.data[1]"),
        "spec.data[1]",
        bus.artifacts,
      ),
    ).rejects.toThrow(/^spec\.data\[1\]: the window takes 9 pairs but the source holds 8/);
    await checkReachable(parseDataUri("shapes://?pairs=8&size=8#skip=3&take=8", "d"), "d", bus.artifacts);
  });
});
