import type { DiffusionConfig } from "./model.js";
import { LINEAR_SCHEDULE } from "./noise-schedule.js";
import { shapesVocabulary } from "./tokenizer.js";

/** Names of the built-in model presets. */
export type PresetName = "tiny" | "shapes16" | "shapes32";

/**
 * Built-in architectures (policy form; improverFromPolicy adds the condition channels).
 * - tiny: unit tests and smoke runs, S = 16, 47k weights.
 * - shapes16: the default shapes world, S = 16, 742k weights of which the UNet has 673k (the
 *   reference's UNet had 613k).
 * - shapes32: the shapes world at S = 32, one more level, 974k weights.
 */
export function preset(name: PresetName): DiffusionConfig {
  const vocab = shapesVocabulary();
  switch (name) {
    case "tiny":
      return {
        text: { vocab, maxLength: 10, dim: 16, layers: 1, heads: 2, mlpRatio: 2 },
        unet: {
          imageSize: 16,
          inChannels: 3,
          condChannels: 0,
          outChannels: 3,
          baseChannels: 8,
          channelMult: [1, 2],
          numResBlocks: 1,
          attentionResolutions: [8],
          midAttention: false,
          groups: 4,
          timeEmbedDim: 32,
          textDim: 16,
          heads: 2,
        },
        schedule: { ...LINEAR_SCHEDULE },
        codec: "identity",
      };
    case "shapes16":
      return {
        text: { vocab, maxLength: 10, dim: 64, layers: 2, heads: 4, mlpRatio: 2 },
        unet: {
          imageSize: 16,
          inChannels: 3,
          condChannels: 0,
          outChannels: 3,
          baseChannels: 24,
          channelMult: [1, 2, 2],
          numResBlocks: 1,
          attentionResolutions: [8, 4],
          midAttention: true,
          groups: 8,
          timeEmbedDim: 96,
          textDim: 64,
          heads: 4,
        },
        schedule: { ...LINEAR_SCHEDULE },
        codec: "identity",
      };
    case "shapes32":
      return {
        text: { vocab, maxLength: 10, dim: 64, layers: 2, heads: 4, mlpRatio: 2 },
        unet: {
          imageSize: 32,
          inChannels: 3,
          condChannels: 0,
          outChannels: 3,
          baseChannels: 24,
          channelMult: [1, 2, 2, 2],
          numResBlocks: 1,
          attentionResolutions: [8, 4],
          midAttention: true,
          groups: 8,
          timeEmbedDim: 96,
          textDim: 64,
          heads: 4,
        },
        schedule: { ...LINEAR_SCHEDULE },
        codec: "identity",
      };
    default:
      throw new Error(`unknown preset ${JSON.stringify(name)} (known: tiny, shapes16, shapes32)`);
  }
}

/** All preset names. */
export const PRESET_NAMES: readonly PresetName[] = ["tiny", "shapes16", "shapes32"];
