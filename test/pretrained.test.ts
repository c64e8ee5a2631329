import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import { formatShapesPrompt, shapesPrompts } from "@idpo/data";
import { decodeCheckpoint, initBackend, readCheckpointMetadata, sample } from "@idpo/diffusion";
import {
  CheckpointStore,
  PRETRAINED,
  PRETRAINED_BASE_ID,
  PRETRAINED_IMPROVER_ID,
  seedPretrained,
  startFromPretrained,
} from "@idpo/mesh";
import { oracleRewardValue } from "@idpo/metrics";
import { RunConfigSchema, RunMethod } from "@idpo/proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openBus } from "../libs/bus/src/index.js";

// The shapes16 base and improver shipped in models/ (see models/shapes16/MODEL_CARD.md).
describe("the shipped pretrained checkpoints", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-pretrained-"));
  beforeAll(() => initBackend({ log: () => {} }));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("load as a shapes16 policy and an improver of the same architecture", () => {
    const [base, improver] = [PRETRAINED_BASE_ID, PRETRAINED_IMPROVER_ID].map((id) => {
      const p = PRETRAINED.find((c) => c.id === id)!;
      return decodeCheckpoint(readFileSync(p.path)).model;
    });
    expect(base.kind).toBe("policy");
    expect(improver.kind).toBe("improver");
    expect(base.imageSize).toBe(16);
    expect(base.config.unet.baseChannels).toBe(improver.config.unet.baseChannels);
    expect(improver.config.unet.condChannels).toBe(3);
    base.dispose();
    improver.dispose();
  });

  it("draw the prompted scene: base samples on held-out prompts score well above noise", async () => {
    const p = PRETRAINED.find((c) => c.id === PRETRAINED_BASE_ID)!;
    const base = decodeCheckpoint(readFileSync(p.path)).model;
    const prompts = shapesPrompts("test").slice(0, 12).map(formatShapesPrompt);
    const out = await sample(base, { prompts, seeds: prompts.map((_, i) => 100 + i), steps: 10 });
    const per = 16 * 16 * 3;
    const rewards = prompts.map((q, i) =>
      oracleRewardValue({ width: 16, height: 16, data: out.data.slice(i * per, (i + 1) * per) }, q),
    );
    const mean = rewards.reduce((a, b) => a + b, 0) / rewards.length;
    // On the test prompts uniform noise scores 0.47 on average and a flat gray image 0.55; the shipped base
    // scores 0.71 over all 63 test prompts × 8 (models/shapes16/MODEL_CARD.md).
    expect(mean).toBeGreaterThan(0.63);
    base.dispose();
  });

  it("are seeded into an artifact store once, under their ids and content hashes", async () => {
    const bus = await openBus({ backend: "embedded", dataDir: join(dir, "bus") });
    try {
      const store = new CheckpointStore(bus.artifacts);
      expect((await seedPretrained(store)).sort()).toEqual(
        [PRETRAINED_BASE_ID, PRETRAINED_IMPROVER_ID].sort(),
      );
      expect(await seedPretrained(store)).toEqual([]);
      const got = await store.get(PRETRAINED_BASE_ID);
      const meta = readCheckpointMetadata(got!.bytes);
      expect(`sha256:${got!.ref.sha256}`).toBe(meta.contentHash);
    } finally {
      await bus.close();
    }
  });

  it("are where shapes16 runs start unless they train their own", () => {
    const cfg = (over: object) =>
      create(RunConfigSchema, { dataset: "shapes://?pairs=100&size=16&seed=0", ...over });
    const plain = cfg({});
    expect(startFromPretrained(plain)).toEqual({ base: true, improver: true });
    expect([plain.baseCheckpointId, plain.improverCheckpointId]).toEqual([
      PRETRAINED_BASE_ID,
      PRETRAINED_IMPROVER_ID,
    ]);
    const sft = cfg({ method: RunMethod.SFT });
    expect(startFromPretrained(sft)).toEqual({ base: true, improver: false });
    for (const own of [
      cfg({ baseTraining: { steps: 10 } }),
      cfg({ modelPreset: "tiny" }),
      cfg({ dataset: "shapes://?pairs=100&size=32&seed=0" }),
      cfg({ baseCheckpointId: "mine" }),
    ]) {
      startFromPretrained(own);
      expect(own.improverCheckpointId).toBe("");
      expect(own.baseCheckpointId === PRETRAINED_BASE_ID).toBe(false);
    }
  });
});
