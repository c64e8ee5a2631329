/** The Scorer service (idpo.scorer.v1): oracle reward per image and set evaluations. */
export {
  type ScorerConfig,
  type ScorerOverrides,
  scorerDefinition,
  scorerRoutes,
  scorerService,
} from "./scorer-service.js";
