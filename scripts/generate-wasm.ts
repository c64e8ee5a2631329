/**
 * `npm run generate:wasm`: compiles the hand-written WebAssembly kernels (libs/diffusion/src/backend/kernels/*.wat)
 * into the TypeScript modules under libs/diffusion/src/gen that the library loads.
 */
import { writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import {
  buildGroupNormSimd,
  GROUP_NORM_SIMD_GENERATED,
  renderGenerated,
} from "../libs/diffusion/src/backend/kernels/group-norm-simd-build.js";

const bin = await buildGroupNormSimd();
await writeFile(GROUP_NORM_SIMD_GENERATED, renderGenerated(bin));
process.stdout.write(
  `wrote ${fileURLToPath(GROUP_NORM_SIMD_GENERATED)} (${bin.plain.length} + ${bin.shared.length} bytes of wasm)\n`,
);
