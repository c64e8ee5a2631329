/** Reading what a run left on the bus, for end-to-end assertions. */
import { randomBytes } from "node:crypto";
import { fromBinary } from "@bufbuild/protobuf";
import type { Bus } from "@idpo/bus";
import { type RunEvent, RunEventSchema } from "@idpo/proto";

/**
 * Every stored event of `kind` (snake_case subject token) of run `runId`, in stream order, read with a fresh
 * durable subscription from the start of the stream. Waits until no new event arrived for `quietMs`.
 */
export async function runEvents(bus: Bus, runId: string, kind: string, quietMs = 1000): Promise<RunEvent[]> {
  const out: RunEvent[] = [];
  let lastArrival = Date.now();
  const sub = await bus.events.subscribe(
    {
      consumer: `e2e-read-${randomBytes(4).toString("hex")}`,
      filter: `idpo.events.${runId}.${kind}`,
      start: "all",
    },
    (msg) => {
      out.push(fromBinary(RunEventSchema, msg.data));
      lastArrival = Date.now();
    },
  );
  while (Date.now() - lastArrival < quietMs) await new Promise((r) => setTimeout(r, 100));
  await sub.stop();
  return out;
}

/** The PairsReady payloads of a run's pairs_ready events. */
export function pairsReady(events: readonly RunEvent[]) {
  const out = [];
  for (const e of events) if (e.payload.case === "pairsReady") out.push(e.payload.value);
  return out;
}
