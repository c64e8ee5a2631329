import { describe, expect, it } from "vitest";
import { summedCopies } from "./copies.js";
import type { BackendResult } from "./measure.js";

function run(forward: number, training: number, load: number): BackendResult {
  const m = (perSecond: number, cpu: number) => ({
    perSecond,
    gflops: perSecond / 10,
    secondsPerCall: 32 / perSecond,
    cpuSecondsPerCall: cpu,
    calls: 5,
    unitsPerCall: 32,
  });
  return {
    backend: "wasm",
    threads: 1,
    preset: "shapes16",
    params: { unet: 1, text: 1, total: 2 },
    flops: { unetForwardPerImage: 1, textForwardPerPrompt: 1 },
    forward: m(forward, 0.2),
    training: m(training, 2),
    epsTraining: m(training * 2, 1),
    trainWorkers: 1,
    loadBefore: [load, 1, 1],
    loadAfter: [load + 1, 1, 1],
    profile: { training: [{ name: "Conv2D", ms: 1, calls: 1 }] },
  };
}

describe("summedCopies: two processes at once as one column", () => {
  it("adds units/s and GFLOP/s, averages time per call, keeps the highest load", () => {
    const out = summedCopies([run(100, 10, 0.5), run(80, 14, 1.5)]);
    expect(out.forward?.perSecond).toBe(180);
    expect(out.forward?.gflops).toBeCloseTo(18, 12);
    expect(out.training.perSecond).toBe(24);
    expect(out.training.calls).toBe(10);
    expect(out.training.secondsPerCall).toBeCloseTo((32 / 10 + 32 / 14) / 2, 12);
    expect(out.training.cpuSecondsPerCall).toBe(2);
    expect(out.epsTraining.perSecond).toBe(48);
    expect(out.sampling).toBeUndefined();
    expect(out.loadBefore[0]).toBe(1.5);
    expect(out.loadAfter[0]).toBe(2.5);
    expect(out.profile).toBeUndefined();
  });

  it("refuses a metric only some copies measured, and no copies at all", () => {
    const partial = { ...run(100, 10, 0.5), forward: undefined };
    expect(() => summedCopies([run(100, 10, 0.5), partial])).toThrow(/forward was measured by 1 of 2/);
    expect(() => summedCopies([])).toThrow(/no runs/);
  });
});
