/**
 * @idpo/cli: the `idpo` command (`program`, `main`) and the quickstart it runs (`runQuickstart`), which the
 * end-to-end tests drive. The local mesh starter and the text forms of a run are in @idpo/local-mesh.
 */
export { main, program } from "./main.js";
export {
  type QuickstartIo,
  type QuickstartOptions,
  type QuickstartResult,
  runQuickstart,
} from "./quickstart/run-quickstart.js";
