import { formatShapesPrompt, readPairs, shapesPrompts } from "@idpo/data";
import { parseDataUri } from "@idpo/mesh";
import type { RunConfig } from "@idpo/proto";

/** Largest number of distinct prompts collected from a dataset (a run samples pairs from them). */
const MAX_TRAIN_PROMPTS = 100_000;

/**
 * The prompts online pairs are generated for: `config.train_prompts` when given, else the prompts of the
 * offline dataset (the shapes world's training prompts for a shapes:// dataset; the distinct captions of a
 * file:// pair dataset, in order of first appearance).
 */
export async function resolveTrainPrompts(config: RunConfig): Promise<string[]> {
  if (config.trainPrompts.length > 0) return [...config.trainPrompts];
  const uri = parseDataUri(config.dataset, "config.dataset");
  switch (uri.kind) {
    case "shapes":
      return shapesPrompts("train").map(formatShapesPrompt);
    case "file": {
      const seen = new Set<string>();
      for await (const rec of readPairs(uri.dir)) {
        if (rec.prompt.trim() !== "") seen.add(rec.prompt);
        if (seen.size >= MAX_TRAIN_PROMPTS) break;
      }
      if (seen.size === 0) throw new Error(`config.dataset ${config.dataset} holds no prompts`);
      return [...seen];
    }
    case "artifact":
      throw new Error(
        `config.train_prompts is empty and prompts cannot be listed from an artifact:// dataset (${config.dataset}): set config.train_prompts`,
      );
  }
}
