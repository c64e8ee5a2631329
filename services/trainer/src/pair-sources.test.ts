import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type ArtifactStore, type Bus, openBus } from "@idpo/bus";
import { encodePairShard, parseDataUri } from "@idpo/mesh";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openPairSources } from "./pair-sources.js";

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
});
