import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { contentHash, decodeCheckpoint, encodeCheckpoint, readCheckpointMetadata } from "./checkpoint.js";
import { createModel, type DiffusionModel, improverFromPolicy } from "./model.js";
import { decodeSafetensors, encodeSafetensors } from "./safetensors.js";
import { maxAbsDiff, microConfig, randomizeWeights, setupTestBackend } from "./test-fixtures.js";

beforeAll(setupTestBackend);

const PYTHON = "/usr/bin/python3";
const READER = fileURLToPath(new URL("../scripts/read_safetensors.py", import.meta.url));

describe("checkpoints", () => {
  let model: DiffusionModel;
  let dir: string;
  beforeAll(() => {
    model = createModel(microConfig(), 1);
    randomizeWeights(model, 2);
    dir = mkdtempSync(join(tmpdir(), "idpo-ckpt-"));
  });
  afterAll(() => {
    model.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it("round-trips weights, config and lineage", () => {
    const bytes = encodeCheckpoint(model, {
      step: 42,
      parent: `sha256:${"a".repeat(64)}`,
      extra: { job: "pretrain-1" },
    });
    const { model: back, metadata } = decodeCheckpoint(bytes);
    expect(metadata.kind).toBe("policy");
    expect(metadata.step).toBe(42);
    expect(metadata.parent).toBe(`sha256:${"a".repeat(64)}`);
    expect(metadata.extra).toEqual({ job: "pretrain-1" });
    expect(metadata.config).toEqual(model.config);
    expect(metadata.contentHash).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect([...back.params.keys()]).toEqual([...model.params.keys()]);
    for (const [k, v] of model.params)
      expect(maxAbsDiff(back.params.get(k)!.dataSync(), v.dataSync())).toBe(0);
    // Same weights → same id; the id does not depend on step or lineage.
    expect(readCheckpointMetadata(encodeCheckpoint(back, { step: 0 })).contentHash).toBe(
      metadata.contentHash,
    );
    back.dispose();
    const improver = improverFromPolicy(model);
    const imp = decodeCheckpoint(encodeCheckpoint(improver, { step: 0 }));
    expect(imp.metadata.kind).toBe("improver");
    expect(imp.model.kind).toBe("improver");
    imp.model.dispose();
    improver.dispose();
  });

  it("fails loudly on shape mismatches, missing tensors and corrupt data", () => {
    const bytes = encodeCheckpoint(model, { step: 1 });
    const file = decodeSafetensors(bytes);
    // A config that implies a wider first level no longer matches the stored tensors.
    const cfg = structuredClone(model.config);
    cfg.unet.baseChannels = 16;
    const wrongConfig = encodeSafetensors(file.tensors, { ...file.metadata, config: JSON.stringify(cfg) });
    expect(() => decodeCheckpoint(wrongConfig)).toThrow(
      /tensor unet\.conv_in\.w has shape \[3,3,3,8\], the config implies \[3,3,3,16\]/,
    );
    const fewer = new Map(file.tensors);
    fewer.delete("unet.conv_out.b");
    expect(() => decodeCheckpoint(encodeSafetensors(fewer, file.metadata))).toThrow(/content hash mismatch/);
    const corrupt = bytes.slice();
    corrupt[corrupt.length - 1] ^= 0xff;
    expect(() => decodeCheckpoint(corrupt)).toThrow(/content hash mismatch/);
    expect(() => decodeCheckpoint(bytes.slice(0, 100))).toThrow(/header length/);
    expect(() =>
      decodeCheckpoint(encodeSafetensors(file.tensors, { ...file.metadata, idpo_format: "other" })),
    ).toThrow(/idpo_format/);
  });

  it("reports a missing tensor by name when the hash is consistent", () => {
    const file = decodeSafetensors(encodeCheckpoint(model, { step: 1 }));
    const fewer = new Map(file.tensors);
    fewer.delete("unet.conv_out.b");
    const data = encodeSafetensors(fewer);
    const hash = contentHash(decodeSafetensors(data).dataSection);
    const rewritten = encodeSafetensors(fewer, { ...file.metadata, content_hash: hash });
    expect(() => decodeCheckpoint(rewritten)).toThrow(/missing tensor unet\.conv_out\.b \[3\]/);
  });

  it.skipIf(!existsSync(PYTHON))("writes files an independent Python reader parses", () => {
    const bytes = encodeCheckpoint(model, { step: 7, parent: null });
    const path = join(dir, "model.safetensors");
    writeFileSync(path, bytes);
    const out = JSON.parse(execFileSync(PYTHON, [READER, path], { encoding: "utf8" }));
    const meta = readCheckpointMetadata(bytes);
    expect(out.metadata.step).toBe("7");
    expect(out.metadata.kind).toBe("policy");
    expect(out.metadata.parent).toBe("");
    expect(JSON.parse(out.metadata.config)).toEqual(model.config);
    expect(`sha256:${out.sha256}`).toBe(meta.contentHash);
    expect(Object.keys(out.tensors).sort()).toEqual([...model.params.keys()].sort());
    for (const [name, v] of model.params) {
      const t = out.tensors[name];
      const data = v.dataSync();
      let sum = 0;
      let sumsq = 0;
      for (const x of data) {
        sum += x;
        sumsq += x * x;
      }
      expect(t.dtype).toBe("F32");
      expect(t.shape).toEqual(v.shape);
      expect(Math.abs(t.sum - sum)).toBeLessThan(1e-9 * Math.max(1, Math.abs(sumsq)));
      expect(Math.abs(t.sumsq - sumsq)).toBeLessThan(1e-9 * Math.max(1, sumsq));
      expect(t.first).toEqual([...data.slice(0, 3)]);
    }
  });

  it("keeps the tensor count unchanged across encode and decode cycles", () => {
    const before = tf.memory().numTensors;
    const { model: back } = decodeCheckpoint(encodeCheckpoint(model, { step: 0 }));
    back.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
