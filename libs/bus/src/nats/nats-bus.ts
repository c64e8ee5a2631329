import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";
import { SubjectMapper } from "../subjects.js";
import type { Bus, StopOptions } from "../types.js";
import { connectNats, type NatsConnectOptions } from "./connect.js";
import {
  type BusDefinitions,
  natsArtifactOptions,
  natsStateOptions,
  natsStreamConfig,
} from "./definitions.js";
import { NatsArtifactStore } from "./nats-artifact-store.js";
import { NatsContext } from "./nats-context.js";
import { NatsEventLog } from "./nats-event-log.js";
import { NatsStateStore } from "./nats-state-store.js";
import { NatsWorkQueue } from "./nats-work-queue.js";

/** Connect to NATS, create every definition idempotently, and return the bus over it. */
export async function openNatsBus(conn: NatsConnectOptions, defs: BusDefinitions): Promise<Bus> {
  const nc = await connectNats(conn);
  try {
    const jsm = await jetstreamManager(nc, { timeout: 10_000 });
    const js = jsm.jetstream();
    const subjects = new SubjectMapper(defs.prefix);
    const ctx = new NatsContext(nc, js, jsm, defs, subjects);
    for (const s of [defs.events, defs.reports, defs.work.stream]) {
      await ctx.ensureStream(
        natsStreamConfig(s, defs.limits, subjects) as ReturnType<typeof natsStreamConfig> & {
          name: string;
        },
      );
    }
    const work = new NatsWorkQueue(ctx);
    await ctx.ensureConsumer(defs.work.stream.name, work.consumerConfig(defs.work.ackWaitMs));
    const kv = await new Kvm(js).create(defs.stateBucket, natsStateOptions(defs.limits));
    const os = await new Objm(js).create(defs.artifactsBucket, natsArtifactOptions(defs.limits));
    let closing: Promise<void> | undefined;
    return {
      kind: "nats",
      events: new NatsEventLog(ctx),
      work,
      state: new NatsStateStore(kv),
      artifacts: new NatsArtifactStore(os, jsm, defs.artifactsBucket),
      close(opts: StopOptions = {}) {
        closing ??= (async () => {
          await Promise.all([...ctx.subscriptions].map((s) => s.stop(opts)));
          // Draining needs the server; when it is unreachable, give up after a while and just close.
          let timer: NodeJS.Timeout | undefined;
          const giveUp = new Promise<void>((r) => {
            timer = setTimeout(r, 5_000);
          });
          await Promise.race([nc.drain().catch(() => {}), giveUp]);
          clearTimeout(timer);
          if (!nc.isClosed()) await nc.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await nc.close();
    throw err;
  }
}
