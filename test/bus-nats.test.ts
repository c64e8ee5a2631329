import { randomBytes } from "node:crypto";
import { inject } from "vitest";
import { openBus } from "../libs/bus/src/index.js";
import { busContract } from "./bus-contract.js";

// The contract on the NATS JetStream backend, against the suite's nats-server (test/setup/global-setup.ts).
// Every test gets its own name prefix, so its streams, buckets and subjects are its own.
busContract("nats", {
  namespace: () => `t${randomBytes(5).toString("hex")}`,
  open: (ns, limits) => openBus({ backend: "nats", natsUrl: inject("natsUrl"), namePrefix: ns, limits }),
});
