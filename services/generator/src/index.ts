/** The Generator service (idpo.generator.v1): samples the policy and works pair-generation shards. */
export {
  createGenerator,
  type Generator,
  type GeneratorConfig,
  type GeneratorDeps,
  type GeneratorOverrides,
  type GeneratorStats,
  generatorConfigFromEnv,
  generatorDefinition,
  generatorService,
} from "./generator-service.js";
export { decodeShardTask, pairsReadyEventId } from "./shard-task.js";
export type { ShardOutcome } from "./shard-worker.js";
