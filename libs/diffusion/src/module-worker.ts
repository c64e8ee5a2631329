import { Worker } from "node:worker_threads";

/**
 * Starts a worker thread on an ES module of this library. The library runs as TypeScript through tsx,
 * whose loader hooks a worker does not inherit, so a `.ts` entry is imported through tsx's API from a
 * small bootstrap; a compiled `.js` entry starts directly. The parent's execArgv is not passed on.
 */
export function startModuleWorker(entry: URL, workerData: unknown): Worker {
  if (!entry.pathname.endsWith(".ts")) return new Worker(entry, { workerData, execArgv: [] });
  const api = import.meta.resolve("tsx/esm/api");
  const href = JSON.stringify(entry.href);
  const bootstrap = `import(${JSON.stringify(api)}).then((tsx) => tsx.tsImport(${href}, ${href}));`;
  return new Worker(bootstrap, { eval: true, workerData, execArgv: [] });
}
