import { describe, expect, it } from "vitest";
import { RunState, runStateEnded } from "./index.js";

describe("runStateEnded", () => {
  it("is true for exactly the three final states", () => {
    const ended = Object.values(RunState)
      .filter((v): v is RunState => typeof v === "number")
      .filter(runStateEnded)
      .map((v) => RunState[v]);
    expect(ended.sort()).toEqual(["CANCELLED", "FAILED", "SUCCEEDED"]);
  });
});
