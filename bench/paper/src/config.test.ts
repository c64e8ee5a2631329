import { readdir, readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { configHash, PAPER_CONFIG_NAMES, paperConfig, validatePaperConfig } from "./config.js";
import { stableJson } from "./stage-runner.js";

describe("paper configs", () => {
  it("every built-in configuration is valid", () => {
    for (const name of PAPER_CONFIG_NAMES) expect(() => validatePaperConfig(paperConfig(name))).not.toThrow();
  });

  it("returns independent copies", () => {
    const a = paperConfig("default");
    a.base.steps = 1;
    expect(paperConfig("default").base.steps).not.toBe(1);
  });

  it("lists every problem with its field", () => {
    const c = paperConfig("quick");
    c.base.steps = 0;
    c.dpo.beta = -1;
    c.eval.samplesPerPrompt = 2;
    c.tuning.variants.push({ key: "sdedit", label: "again", improveStrength: 1.5 });
    c.tuning.variants.push({ key: "offline", label: "more than the dataset", offlinePairs: 501 });
    c.ours.pairSizes = [64, 32, 16];
    c.modelPreset = "shapes32";
    c.tuning.extendPatience = 0;
    let msg = "";
    try {
      validatePaperConfig(c);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toContain("base.steps = 0");
    expect(msg).toContain("tuning.extendPatience");
    expect(msg).toContain("dpo.beta = -1");
    expect(msg).toContain("eval.samplesPerPrompt = 2");
    expect(msg).toContain('tuning.variants[5].key = "sdedit": used twice or reserved');
    expect(msg).toContain("tuning.variants[5].improveStrength = 1.5");
    expect(msg).toContain("tuning.variants[6].offlinePairs = 501: expected an integer in [0, 500]");
    expect(msg).toContain("expected increasing sizes");
    expect(msg).toContain("modelPreset = shapes32 works on 32px images");
  });

  it("starts from the shipped checkpoints only where they fit", () => {
    const c = paperConfig("default");
    expect(c.startFrom).toBe("pretrained");
    c.modelPreset = "tiny";
    expect(() => validatePaperConfig(c)).toThrow(/shipped checkpoints are shapes16 at 16 px/);
    expect(paperConfig("scratch").startFrom).toBe("scratch");
    expect(paperConfig("quick").startFrom).toBe("scratch");
  });

  it("requires the Table 1 pair count among the Table 2 sizes", () => {
    const c = paperConfig("default");
    c.ours.pairsPerIteration = 100;
    expect(() => validatePaperConfig(c)).toThrow(/must include ours.pairsPerIteration \(100\)/);
  });

  it("refuses evaluation and validation prompts that cannot be disjoint in the train split", () => {
    const c = paperConfig("default");
    c.eval.trainPrompts = 200;
    c.eval.validationPrompts = 60;
    expect(() => validatePaperConfig(c)).toThrow(/must fit disjointly/);
  });

  it("hashes by content, not key order", () => {
    expect(stableJson({ b: 1, a: [1, { d: 2, c: 3 }] })).toBe('{"a":[1,{"c":3,"d":2}],"b":1}');
    const a = paperConfig("quick");
    const reversed = (v: unknown): unknown => {
      if (Array.isArray(v)) return v.map(reversed);
      if (v === null || typeof v !== "object") return v;
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(v).reverse()) out[k] = reversed((v as Record<string, unknown>)[k]);
      return out;
    };
    const b = reversed(a) as typeof a;
    expect(Object.keys(b)[0]).toBe("tuning");
    expect(configHash(b)).toBe(configHash(a));
    a.ours.beta = 999;
    expect(configHash(a)).not.toBe(configHash(b));
  });

  it("the committed seed files of docs/RESULTS.md were measured with the default configuration as it is", async () => {
    const dir = new URL("../../../docs/results/default/seeds/", import.meta.url);
    const files = (await readdir(dir)).filter((f) => f.endsWith(".json"));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const { configHash: hash } = JSON.parse(await readFile(new URL(f, dir), "utf8")) as {
        configHash: string;
      };
      expect(hash, `${f}: rerun the benchmark after changing the default configuration`).toBe(
        configHash(paperConfig("default")),
      );
    }
  });
});
