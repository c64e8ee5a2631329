import { createLogger } from "@idpo/runtime";
import { describe, expect, it } from "vitest";
import { createServiceModelHost } from "./model-host.js";

describe("createServiceModelHost", () => {
  it("names the service when it has neither an engine nor a checkpoint store", async () => {
    const deps = { config: {}, logger: createLogger("error", {}, () => {}), setServing: () => {} };
    await expect(createServiceModelHost("generator", "policy", deps)).rejects.toThrow(
      "generator: give an engine or a checkpoint store",
    );
  });
});
