import { describe, expect, it } from "vitest";
import { LINEAR_SCHEDULE, makeNoiseSchedule, SCALED_LINEAR_SCHEDULE } from "./noise-schedule.js";

describe("noise schedules", () => {
  it("linear: β from 1e-4 to 0.02 over T = 1000, ᾱ the running product", () => {
    const s = makeNoiseSchedule(LINEAR_SCHEDULE);
    expect(s.timesteps).toBe(1000);
    expect(s.betas[0]).toBeCloseTo(1e-4, 12);
    expect(s.betas[999]).toBeCloseTo(0.02, 12);
    expect(s.betas[500]).toBeCloseTo(1e-4 + (500 / 999) * (0.02 - 1e-4), 12);
    let prod = 1;
    for (let t = 0; t < 1000; t++) prod *= 1 - s.betas[t];
    expect(s.alphasCumprod[999]).toBeCloseTo(prod, 15);
    // DDPM's linear schedule ends almost at pure noise: ᾱ_T ≈ 4.0e-5.
    expect(s.alphasCumprod[999]).toBeGreaterThan(3.9e-5);
    expect(s.alphasCumprod[999]).toBeLessThan(4.1e-5);
  });

  it("scaled-linear: √β linear between √0.00085 and √0.012", () => {
    const s = makeNoiseSchedule(SCALED_LINEAR_SCHEDULE);
    expect(s.betas[0]).toBeCloseTo(0.00085, 12);
    expect(s.betas[999]).toBeCloseTo(0.012, 12);
    const mid = Math.sqrt(0.00085) + (250 / 999) * (Math.sqrt(0.012) - Math.sqrt(0.00085));
    expect(s.betas[250]).toBeCloseTo(mid * mid, 12);
  });

  it("rejects bad configs", () => {
    expect(() => makeNoiseSchedule({ ...LINEAR_SCHEDULE, betaEnd: 1.5 })).toThrow(/betaStart/);
    expect(() => makeNoiseSchedule({ ...LINEAR_SCHEDULE, timesteps: 1 })).toThrow(/timesteps/);
  });
});
