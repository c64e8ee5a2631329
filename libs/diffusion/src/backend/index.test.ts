import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BACKEND_ENV, BACKEND_NAMES, initBackend, THREADS_ENV } from "./index.js";

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}
const tfjsNode = installed("@tensorflow/tfjs-node");
const tfjsNodeGpu = installed("@tensorflow/tfjs-node-gpu");

// One process-wide initialisation: the tests run in this order and share it.
describe("initBackend", () => {
  const saved = { backend: process.env[BACKEND_ENV], threads: process.env[THREADS_ENV] };
  beforeEach(() => {
    delete process.env[BACKEND_ENV];
    delete process.env[THREADS_ENV];
  });
  afterEach(() => {
    for (const [key, value] of [
      [BACKEND_ENV, saved.backend],
      [THREADS_ENV, saved.threads],
    ] as const) {
      if (value == null) delete process.env[key];
      else process.env[key] = value;
    }
    vi.restoreAllMocks();
  });

  it("rejects an invalid IDPO_TF_BACKEND loudly, naming the variable and the accepted values", async () => {
    process.env[BACKEND_ENV] = "tpu";
    const error = await initBackend({ log: () => {} }).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toContain('IDPO_TF_BACKEND="tpu"');
    for (const name of BACKEND_NAMES) expect((error as Error).message).toContain(name);
  });

  it("rejects a bad thread count", async () => {
    process.env[THREADS_ENV] = "two";
    await expect(initBackend({ log: () => {} })).rejects.toThrow(
      /IDPO_TF_THREADS="two" is not a positive integer/,
    );
    await expect(initBackend({ threads: 0, log: () => {} })).rejects.toThrow(
      /threads must be a positive integer/,
    );
  });

  it.skipIf(tfjsNode)("fails loudly when a forced backend cannot load, with the reason", async () => {
    process.env[BACKEND_ENV] = "tensorflow";
    await expect(initBackend({ log: () => {} })).rejects.toThrow(
      /IDPO_TF_BACKEND=tensorflow: backend "tensorflow" could not be initialised: import\("@tensorflow\/tfjs-node"\) failed/,
    );
  });

  it.skipIf(tfjsNode || tfjsNodeGpu)(
    "falls through tfjs-node-gpu and tfjs-node with their reasons and logs the choice as one JSON line",
    () => {
      // A fresh process: the automatic order can only be observed before anything is initialised.
      const index = fileURLToPath(new URL("./index.ts", import.meta.url));
      const env = { ...process.env };
      delete env[BACKEND_ENV];
      delete env[THREADS_ENV];
      const child = spawnSync(
        process.execPath,
        [
          "--import",
          "tsx",
          "--input-type=module",
          "-e",
          `const m = await import(${JSON.stringify(index)}); await m.initBackend();`,
        ],
        { env, encoding: "utf8", timeout: 60_000 },
      );
      expect(child.status).toBe(0);
      const lines = child.stderr.split("\n").filter((l) => l.startsWith("{"));
      expect(lines).toHaveLength(1);
      const record = JSON.parse(lines[0]);
      expect(record.msg).toBe("tfjs backend selected");
      expect(record.source).toBe("auto");
      expect(record.tried.map((t: { backend: string }) => t.backend)).toEqual([
        "tensorflow-gpu",
        "tensorflow",
        "wasm",
      ]);
      expect(record.tried[0]).toMatchObject({ ok: false, reason: expect.stringContaining("tfjs-node-gpu") });
      expect(record.tried[1]).toMatchObject({ ok: false, reason: expect.stringContaining("tfjs-node") });
      expect(record).toMatchObject({
        backend: "wasm",
        threads: expect.any(Number),
        wasmBinary: expect.any(String),
      });
    },
  );

  it("picks threaded wasm with 2 threads, logs one JSON line, and is idempotent", async () => {
    process.env[BACKEND_ENV] = "wasm";
    const lines: string[] = [];
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: unknown) => {
      lines.push(String(chunk));
      return true;
    });
    const info = await initBackend({ threads: 2 });
    expect(info).toMatchObject({ name: "wasm", tfBackend: "wasm", threads: 2, source: "env" });
    expect(info.wasmBinary).toBe("threaded-simd");
    expect(info.tried).toEqual([{ backend: "wasm", ok: true }]);
    expect(info.kernels).toEqual(
      expect.arrayContaining(["Conv2DBackpropFilter", "Conv2DBackpropInput", "BatchMatMul"]),
    );
    expect(tf.getBackend()).toBe("wasm");
    const logged = lines.filter((l) => l.includes("tfjs backend selected"));
    expect(logged).toHaveLength(1);
    const record = JSON.parse(logged[0]);
    expect(record).toMatchObject({ level: "info", backend: "wasm", threads: 2, source: "env" });

    // Second call: same info, nothing logged again; a switched backend is restored.
    await tf.setBackend("cpu");
    const again = await initBackend();
    expect(again).toBe(info);
    expect(tf.getBackend()).toBe("wasm");
    expect(lines.filter((l) => l.includes("tfjs backend selected"))).toHaveLength(1);
  });

  it("refuses to switch backend or thread count once initialised", async () => {
    await expect(initBackend({ backend: "cpu" })).rejects.toThrow(/already "wasm".*cannot switch to "cpu"/);
    await expect(initBackend({ threads: 1 })).rejects.toThrow(/already runs 2 threads/);
  });

  it("computes on the threaded backend like on cpu", async () => {
    const x = Array.from({ length: 2 * 6 * 6 * 4 }, (_, i) => Math.sin(i));
    const f = Array.from({ length: 3 * 3 * 4 * 5 }, (_, i) => Math.cos(i));
    const run = async (backend: string) => {
      await tf.setBackend(backend);
      return tf.tidy(() =>
        Array.from(
          tf.conv2d(tf.tensor4d(x, [2, 6, 6, 4]), tf.tensor4d(f, [3, 3, 4, 5]), 1, "same").dataSync(),
        ),
      );
    };
    const wasm = await run("wasm");
    const cpu = await run("cpu");
    await tf.setBackend("wasm");
    for (let i = 0; i < cpu.length; i++) expect(wasm[i]).toBeCloseTo(cpu[i], 4);
  });
});
