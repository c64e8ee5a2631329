import { invalidField } from "./contract-error.js";

/**
 * Image side of each architecture preset a fresh PRETRAIN may name (those of @idpo/diffusion, which has no
 * place in a tfjs-free contract; a test keeps the two equal).
 */
export const MODEL_PRESET_IMAGE_SIZES = { tiny: 16, shapes16: 16, shapes32: 32 } as const;

/** A preset name. */
export type ModelPresetName = keyof typeof MODEL_PRESET_IMAGE_SIZES;

/** Every preset name. */
export const MODEL_PRESETS = Object.keys(MODEL_PRESET_IMAGE_SIZES) as ModelPresetName[];

/** The preset of an empty `model_preset`. */
export const DEFAULT_MODEL_PRESET: ModelPresetName = "shapes16";

/** The preset `name` names ("" means the default); INVALID_ARGUMENT naming `field` for an unknown one. */
export function resolveModelPreset(name: string, field: string): ModelPresetName {
  if (name === "") return DEFAULT_MODEL_PRESET;
  if (!Object.hasOwn(MODEL_PRESET_IMAGE_SIZES, name)) {
    throw invalidField(field, `unknown preset ${JSON.stringify(name)} (known: ${MODEL_PRESETS.join(", ")})`);
  }
  return name as ModelPresetName;
}
