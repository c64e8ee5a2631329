/**
 * @idpo/cli: the `idpo` command (`program`, `main`), and what tests and benchmarks reuse from it: the local
 * mesh starter, the quickstart, and the text forms of a run.
 */
export { main, program } from "./main.js";
export { type LocalMesh, type LocalMeshOptions, startLocalMesh } from "./quickstart/local-mesh.js";
export { describeRun, progressLine, rewardTable, statusLine } from "./quickstart/run-format.js";
export {
  type QuickstartIo,
  type QuickstartOptions,
  type QuickstartResult,
  runQuickstart,
} from "./quickstart/run-quickstart.js";
