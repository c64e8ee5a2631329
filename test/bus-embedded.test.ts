import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openBus } from "../libs/bus/src/index.js";
import { busContract } from "./bus-contract.js";

const root = mkdtempSync(join(tmpdir(), "idpo-bus-embedded-"));
let n = 0;

// The same contract on the embedded backend: each namespace is a fresh data directory.
busContract("embedded", {
  namespace: () => join(root, `ns${n++}`),
  open: (dataDir, limits) => openBus({ backend: "embedded", dataDir, limits }),
});
