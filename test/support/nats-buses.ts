import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll } from "vitest";
import { type Bus, openBus } from "../../libs/bus/src/index.js";
import { TEST_LIMITS } from "../bus-contract.js";
import { startTestNats, type TestNats } from "./nats.js";

/** What {@link natsBuses} gives a describe block. */
export interface NatsBuses {
  /** The block's server (started before its first test). */
  server(): TestNats;
  /** A bus on its own connection (as a separate process would have) in the current namespace. */
  connection(): Promise<Bus>;
  /** Starts a new namespace for the next connections and returns its name prefix. */
  fresh(): string;
  /** The current namespace's name prefix. */
  prefix(): string;
}

/**
 * A NATS server of its own for one describe block (so that killing it disturbs no other file) and bus
 * connections on it: the server starts before the block's tests and stops after them; every connection a
 * test opens is closed after that test. Call it inside `describe`; a test's own `afterEach` hooks
 * registered after it run first (vitest runs after-hooks in reverse).
 */
export function natsBuses(namespaceLetter: string): NatsBuses {
  let server: TestNats | undefined;
  const buses: Bus[] = [];
  let prefix = "";
  beforeAll(async () => {
    server = await startTestNats();
  });
  afterAll(async () => {
    await server?.stop();
  });
  afterEach(async () => {
    await Promise.all(buses.splice(0).map((b) => b.close({ timeoutMs: 0 })));
  });
  const started = (): TestNats => {
    if (!server) throw new Error("natsBuses: the server starts in beforeAll; use it inside a test");
    return server;
  };
  return {
    server: started,
    async connection() {
      const b = await openBus({
        backend: "nats",
        natsUrl: started().url,
        namePrefix: prefix,
        limits: TEST_LIMITS,
      });
      buses.push(b);
      return b;
    },
    fresh() {
      prefix = `${namespaceLetter}${randomBytes(5).toString("hex")}`;
      return prefix;
    },
    prefix: () => prefix,
  };
}
