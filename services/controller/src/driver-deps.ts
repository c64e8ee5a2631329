import type { Client } from "@connectrpc/connect";
import type { Bus } from "@idpo/bus";
import type { CheckpointStore } from "@idpo/mesh";
import type { GeneratorService, ScorerService, TrainerService } from "@idpo/proto";
import type { Logger } from "@idpo/runtime";
import type { RunStore } from "./run-store.js";
import type { RunWriter } from "./run-writer.js";

/** Clients of the peers a controller drives. */
export interface Peers {
  trainer: Client<typeof TrainerService>;
  generator: Client<typeof GeneratorService>;
  scorer: Client<typeof ScorerService>;
}

/** Timings of the controller (from the environment; tests shorten them). */
export interface ControllerOptions {
  /** Smallest interval between two progress writes of one run, ms (IDPO_CONTROLLER_PROGRESS_MS, default 1000). */
  progressIntervalMs: number;
  /** How long a stage keeps retrying an unreachable peer before the run fails, ms
   * (IDPO_CONTROLLER_PEER_RETRY_S, default 600 s). */
  peerRetryMs: number;
  /** How long evaluation waits for the generators to load a new checkpoint on their own (they do on
   * checkpoint.published) before asking with LoadCheckpoint, ms (IDPO_CONTROLLER_LOAD_WAIT_MS, default 5000). */
  loadWaitMs: number;
  /** First delay between GetJob polls when a WatchJob stream breaks, ms (doubles up to 30 s; default 1000). */
  jobPollMs: number;
  /** TTL of a controller's lease on a run it drives, ms (IDPO_CONTROLLER_LEASE_SECONDS, default 15 s): another
   * controller takes a run over this long after its holder stopped renewing (died). */
  leaseMs: number;
}

/** Default timings. */
export const DEFAULT_CONTROLLER_OPTIONS: ControllerOptions = {
  progressIntervalMs: 1000,
  peerRetryMs: 600_000,
  loadWaitMs: 5000,
  jobPollMs: 1000,
  leaseMs: 15_000,
};

/** What a driver works with. */
export interface DriverDeps {
  store: RunStore;
  bus: Bus;
  peers: Peers;
  checkpoints: CheckpointStore;
  logger: Logger;
  options: ControllerOptions;
}

/** What a stage of a run works with. */
export interface StageContext {
  readonly runId: string;
  readonly deps: DriverDeps;
  /** Aborted when the driver stops or another controller overtakes the step. */
  readonly signal: AbortSignal;
  /** The run's state writes (compare-and-set, progress, state events). */
  readonly writer: RunWriter;
}
