import type { ServiceDefinition } from "@idpo/runtime";

/** The services `idpo serve` can start, in start order (dependencies first). */
export const SERVICE_NAMES = [
  "scorer",
  "inference",
  "improver",
  "generator",
  "trainer",
  "controller",
] as const;
/** One of SERVICE_NAMES. */
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Loads a service's definition from its package (lazily, so one service does not load another's deps). */
export async function loadService(name: ServiceName): Promise<ServiceDefinition> {
  switch (name) {
    case "scorer":
      return (await import("@idpo/scorer")).scorerService;
    case "inference":
      return (await import("@idpo/inference")).inferenceService;
    case "improver":
      return (await import("@idpo/improver")).improverService;
    case "generator":
      return (await import("@idpo/generator")).generatorService;
    case "trainer":
      return (await import("@idpo/trainer")).trainerService;
    case "controller":
      return (await import("@idpo/controller")).controllerService;
  }
}
