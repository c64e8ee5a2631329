import { describe, expect, it } from "vitest";
import { enginesLines } from "./report.js";

describe("enginesLines", () => {
  const stage = (name: string, engines?: string) => ({
    stage: name,
    seconds: 1,
    ...(engines ? { engines } : {}),
  });

  it("is one line when every stage ran on the same engines", () => {
    const info = { backend: "now", stageSeconds: [stage("a", "E1"), stage("b", "E1")] };
    expect(enginesLines(info)).toEqual(["Engines: E1"]);
    expect(enginesLines({ backend: "now", stageSeconds: [] })).toEqual(["Engines: now"]);
  });

  it("names the stages of each set of engines, and those recorded without", () => {
    const info = {
      backend: "now",
      stageSeconds: [
        stage("a", "E1"),
        stage("b", "E2"),
        stage("c", "E1"),
        stage("d", "E1"),
        stage("e", "E1"),
        stage("f", "E1"),
        stage("old"),
      ],
    };
    expect(enginesLines(info)).toEqual([
      "Engines of 5 stages (a, c, d and 2 more): E1",
      "Engines of 1 stage (b): E2",
      "Engines of 1 stage (old): not recorded (they ran before idpo kept each stage's engines); this invocation's: now",
    ]);
  });
});
