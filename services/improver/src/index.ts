/** The Improver service (idpo.improver.v1): the improvement model behind a dynamically batched ImproveImages. */

export {
  createImprover,
  type Improver,
  type ImproverConfig,
  type ImproverDeps,
  type ImproverOverrides,
  improverConfigFromEnv,
  improverDefinition,
  improverService,
} from "./improver-service.js";
