import { type Bus, openBus } from "@idpo/bus";

let shared: Promise<Bus> | undefined;

/**
 * The process-wide bus: NATS when IDPO_NATS_URL is set, else the embedded backend under IDPO_DATA_DIR.
 * Services started in one process (`idpo serve all`, quickstart) share it, so the embedded backend's
 * in-process delivery reaches all of them.
 */
export function sharedBus(): Promise<Bus> {
  shared ??= openBus({ connectionName: `idpo-${process.pid}` });
  return shared;
}

/** Closes the process-wide bus, if open. */
export async function closeSharedBus(): Promise<void> {
  const b = shared;
  shared = undefined;
  if (b) await (await b).close();
}
