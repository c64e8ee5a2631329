/**
 * @idpo/local-mesh: the whole mesh in one process, and the text forms of a run. `startLocalMesh` starts every
 * service on loopback ports over the embedded bus (what `idpo quickstart`, `idpo bench paper` and the end to
 * end tests run on), `serveLocalDashboard` serves the run dashboard beside it, `loadService` gives the
 * definition of one service (what `idpo serve` starts), `followRun` follows a Controller run to its end,
 * and `describeRun`, `progressLine`, `statusLine` and `rewardTable` put a Run into words for a terminal.
 */
export { type FollowRunOptions, followRun, type RunFollowClient } from "./follow-run.js";
export {
  type LocalMesh,
  type LocalMeshOptions,
  serveLocalDashboard,
  startLocalMesh,
} from "./local-mesh.js";
export {
  describeRun,
  evaluationRows,
  formatDuration,
  progressLine,
  rewardTable,
  statusLine,
} from "./run-format.js";
export { loadService, SERVICE_NAMES, type ServiceName } from "./services.js";
