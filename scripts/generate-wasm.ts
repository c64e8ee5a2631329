/**
 * `npm run generate:wasm`: compiles the hand-written WebAssembly modules (libs/diffusion/src/backend/kernels/*.wat)
 * into the TypeScript modules under libs/diffusion/src/gen that the library loads.
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import {
  buildWat,
  generatedPath,
  renderGenerated,
  WAT_MODULES,
} from "../libs/diffusion/src/backend/kernels/wat-build.js";

for (const name of WAT_MODULES) {
  const bin = await buildWat(name);
  await writeFile(generatedPath(name), renderGenerated(name, bin));
  process.stdout.write(
    `wrote ${fileURLToPath(generatedPath(name))} (${bin.plain.length} + ${bin.shared.length} bytes of wasm)\n`,
  );
}
