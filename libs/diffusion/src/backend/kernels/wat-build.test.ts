import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { buildWat, generatedPath, renderGenerated, WAT_MODULES } from "./wat-build.js";

describe("the generated WebAssembly modules", () => {
  it.each(WAT_MODULES)(
    "src/gen/%s-wasm.ts is its .wat compiled (run `npm run generate:wasm` after editing it)",
    async (name) => {
      const committed = await readFile(generatedPath(name), "utf8");
      expect(committed).toBe(renderGenerated(name, await buildWat(name)));
    },
  );
});
