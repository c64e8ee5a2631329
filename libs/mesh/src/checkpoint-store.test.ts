import { describe, expect, it } from "vitest";
import { checkpointArtifact } from "./checkpoint-store.js";

describe("checkpointArtifact", () => {
  it("maps an id to its artifact and names what is wrong with a bad one", () => {
    expect(checkpointArtifact("runs/r1/iter-2/policy")).toBe("checkpoints/runs/r1/iter-2/policy.safetensors");
    expect(checkpointArtifact("jobs/j7@step-100")).toBe("checkpoints/jobs/j7@step-100.safetensors");
    // Every character of this id is allowed: it is refused for its "..", and the message says so.
    expect(() => checkpointArtifact("../../etc/passwd")).toThrow(
      'invalid checkpoint id "../../etc/passwd": ".." is not allowed (ids are not paths)',
    );
    expect(() => checkpointArtifact("a b")).toThrow(
      'invalid checkpoint id "a b": expected 1 to 200 of [A-Za-z0-9._@/-]',
    );
    expect(() => checkpointArtifact("x".repeat(201))).toThrow(/expected 1 to 200 of/);
  });
});
