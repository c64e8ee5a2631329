import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { formatDuration, inputsHash, StageRunner, stableJson } from "./stage-runner.js";

const id = { config: "quick", configHash: "abc", seed: 1 };

function tempFile(): string {
  return join(mkdtempSync(join(tmpdir(), "idpo-stage-runner-")), "sub", "state.json");
}

describe("StageRunner", () => {
  it("runs each stage once and resumes from the state file at the first unfinished stage", async () => {
    const file = tempFile();
    const calls: string[] = [];
    const r1 = await StageRunner.open(file, id);
    expect(
      await r1.run("base", {}, async () => {
        calls.push("base");
        return { ckpt: "b" };
      }),
    ).toEqual({ ckpt: "b" });
    await expect(
      r1.run("improver", {}, async () => {
        calls.push("improver");
        throw new Error("crash");
      }),
    ).rejects.toThrow("crash");
    expect(r1.firstUnfinished(["base", "improver", "eval"])).toBe("improver");

    const r2 = await StageRunner.open(file, id);
    expect(r2.done("base")).toBe(true);
    expect(r2.done("improver")).toBe(false);
    expect(
      await r2.run("base", {}, async () => {
        calls.push("base-again");
        return { ckpt: "x" };
      }),
    ).toEqual({ ckpt: "b" });
    expect(
      await r2.run("improver", {}, async () => {
        calls.push("improver");
        return 7;
      }),
    ).toBe(7);
    expect(calls).toEqual(["base", "improver", "improver"]);
    expect(r2.finished()).toEqual(["base", "improver"]);
    expect(r2.firstUnfinished(["base", "improver"])).toBeUndefined();
  });

  it("returns what a resumed run would get back (a JSON round trip)", async () => {
    const r = await StageRunner.open(tempFile(), id);
    const got = await r.run("s", {}, async () => ({ a: undefined, n: 1, d: new Date(0) }));
    expect(got).toEqual({ n: 1, d: "1970-01-01T00:00:00.000Z" });
  });

  it("records wall time from the injected clock", async () => {
    let t = 1000;
    const clock = () => {
      t += 2500;
      return new Date(t);
    };
    const r = await StageRunner.open(tempFile(), id, () => {}, clock);
    await r.run("a", {}, async () => 1);
    expect(r.record("a")?.seconds).toBe(2.5);
  });

  it("refuses a state file of another configuration or seed, naming both", async () => {
    const file = tempFile();
    await (await StageRunner.open(file, id)).run("a", {}, async () => 1);
    await expect(StageRunner.open(file, { ...id, config: "default" })).rejects.toThrow(
      /config "quick" seed 1, not "default" seed 1/,
    );
    await expect(StageRunner.open(file, { ...id, seed: 2 })).rejects.toThrow(/seed 1, not .* seed 2/);
  });

  it("reruns exactly the stages whose inputs changed, whatever else in the configuration did", async () => {
    const file = tempFile();
    const calls: string[] = [];
    const stage = (r: StageRunner, name: string, inputs: unknown) =>
      r.run(name, inputs, async () => {
        calls.push(name);
        return `${name}@${inputsHash(inputs)}`;
      });
    const r1 = await StageRunner.open(file, id);
    await stage(r1, "base", { steps: 10 });
    await stage(r1, "sft", { lr: 1e-4, init: "sha-1" });
    const r2 = await StageRunner.open(file, { ...id, configHash: "another" });
    expect(await stage(r2, "base", { steps: 10 })).toBe(`base@${inputsHash({ steps: 10 })}`);
    await stage(r2, "sft", { lr: 2e-4, init: "sha-1" });
    await stage(r2, "new-variant", { beta: 500 });
    expect(calls).toEqual(["base", "sft", "sft", "new-variant"]);
    expect(r2.snapshot().configHash).toBe("another");
  });

  it("fingerprints inputs by content: key order and undefined fields do not matter, bigints do", () => {
    expect(stableJson({ b: 1n, a: [1, { d: 2, c: undefined }] })).toBe('{"a":[1,{"d":2}],"b":"1"}');
    expect(inputsHash({ a: 1, b: 2 })).toBe(inputsHash({ b: 2, a: 1 }));
    expect(inputsHash({ a: 1, b: undefined })).toBe(inputsHash({ a: 1 }));
    expect(inputsHash({ seed: 1n })).not.toBe(inputsHash({ seed: 2n }));
    expect(inputsHash({})).toMatch(/^[0-9a-f]{16}$/);
  });

  it("refuses a corrupt state file instead of overwriting it", async () => {
    const file = tempFile();
    await StageRunner.open(file, id);
    writeFileSync(file, "{not json");
    await expect(StageRunner.open(file, id)).rejects.toThrow(/not JSON/);
    expect(readFileSync(file, "utf8")).toBe("{not json");
  });

  it("records the engines set when each stage finished, and refuses a state whose engines are not text", async () => {
    const file = tempFile();
    const runner = await StageRunner.open(file, id);
    await runner.run("before", 1, async () => 1);
    runner.engines = "sampling: sidecar; training: tfjs wasm, 1 thread";
    await runner.run("after", 1, async () => 2);
    runner.engines = "sampling: wasm; training: tfjs wasm, 2 threads";
    await runner.run("after", 1, async () => 3);
    expect(runner.record("before")?.engines).toBeUndefined();
    expect(runner.record("after")?.engines).toBe("sampling: sidecar; training: tfjs wasm, 1 thread");
    const reopened = await StageRunner.open(file, id);
    expect(reopened.record("after")?.engines).toBe("sampling: sidecar; training: tfjs wasm, 1 thread");
    const state = JSON.parse(readFileSync(file, "utf8"));
    state.stages.after.engines = 3;
    writeFileSync(file, JSON.stringify(state));
    await expect(StageRunner.open(file, id)).rejects.toThrow(/stage after is malformed/);
  });

  it("forgets a stage so it runs again, and checks stage names", async () => {
    const r = await StageRunner.open(tempFile(), id);
    await r.run("a", {}, async () => 1);
    await r.forget("a");
    expect(await r.run("a", {}, async () => 2)).toBe(2);
    await expect(r.run("Bad Name", {}, async () => 1)).rejects.toThrow(/stage name/);
  });

  it("formats durations", () => {
    expect(formatDuration(4.24)).toBe("4.2s");
    expect(formatDuration(123)).toBe("2m 03s");
    expect(formatDuration(3723)).toBe("1h 02m 03s");
  });
});
