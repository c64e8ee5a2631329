/** An RGB triple with components in [0, 1]. */
export type Rgb = readonly [number, number, number];

/** Shape names of the shapes world. */
export const SHAPES = ["circle", "square", "triangle"] as const;
/** A shape of the shapes world. */
export type ShapeName = (typeof SHAPES)[number];

/** Size words of the shapes world. */
export const SIZES = ["small", "medium", "large"] as const;
/** A size word of the shapes world. */
export type SizeName = (typeof SIZES)[number];

/** Radius fraction r* (of the image side) per size word (docs/architecture.md). */
export const SIZE_RADIUS: Readonly<Record<SizeName, number>> = { small: 0.18, medium: 0.28, large: 0.38 };

/** Foreground palette (docs/architecture.md), RGB in [0, 1]. */
export const COLORS = {
  red: [0.9, 0.1, 0.1],
  green: [0.1, 0.8, 0.2],
  blue: [0.15, 0.3, 0.95],
  yellow: [0.95, 0.9, 0.1],
  magenta: [0.9, 0.1, 0.9],
  cyan: [0.1, 0.9, 0.9],
  orange: [1.0, 0.55, 0.0],
  white: [1.0, 1.0, 1.0],
} as const satisfies Record<string, Rgb>;
/** A foreground color name. */
export type ColorName = keyof typeof COLORS;
/** Foreground color names in palette order. */
export const COLOR_NAMES = Object.keys(COLORS) as ColorName[];

/** Background palette (docs/architecture.md), RGB in [0, 1]. */
export const BACKGROUNDS = {
  black: [0, 0, 0],
  gray: [0.5, 0.5, 0.5],
  navy: [0.05, 0.05, 0.35],
  white: [1, 1, 1],
  beige: [0.96, 0.96, 0.86],
} as const satisfies Record<string, Rgb>;
/** A background name. */
export type BackgroundName = keyof typeof BACKGROUNDS;
/** Background names in palette order. */
export const BACKGROUND_NAMES = Object.keys(BACKGROUNDS) as BackgroundName[];

/** Minimum ‖color − bg‖₂/√3 for a (color, bg) pair to be in the grammar. */
export const MIN_CONTRAST = 0.4;

/** A parsed shapes-world prompt. */
export interface ShapesPrompt {
  /** Size word; its radius fraction is `SIZE_RADIUS[size]`. */
  size: SizeName;
  /** Foreground color name. */
  color: ColorName;
  /** Shape name. */
  shape: ShapeName;
  /** Background name. */
  bg: BackgroundName;
}

/** Normalised color distance ‖a − b‖₂/√3 in [0, 1]. */
export function colorDistance(a: Rgb, b: Rgb): number {
  const dr = a[0] - b[0];
  const dg = a[1] - b[1];
  const db = a[2] - b[2];
  return Math.sqrt(dr * dr + dg * dg + db * db) / Math.sqrt(3);
}

/** Whether the (color, bg) pair has enough contrast to be in the grammar. */
export function isAllowedPair(color: ColorName, bg: BackgroundName): boolean {
  return colorDistance(COLORS[color], BACKGROUNDS[bg]) >= MIN_CONTRAST;
}

/** The prompt text: "a {size} {color} {shape} on a {bg} background". */
export function formatShapesPrompt(p: ShapesPrompt): string {
  return `a ${p.size} ${p.color} ${p.shape} on a ${p.bg} background`;
}

const PROMPT_RE = /^a (\S+) (\S+) (\S+) on a (\S+) background$/;

/**
 * Parses a prompt of the grammar "a {size} {color} {shape} on a {bg} background"
 * (case-insensitive, surrounding and repeated whitespace tolerated). Throws an error that names
 * the unknown word, or the low-contrast (color, bg) pair, when the prompt is outside the grammar.
 */
export function parseShapesPrompt(prompt: string): ShapesPrompt {
  if (typeof prompt !== "string")
    throw new Error(`parseShapesPrompt: prompt must be a string, got ${typeof prompt}`);
  const norm = prompt.trim().toLowerCase().replace(/\s+/g, " ");
  const m = PROMPT_RE.exec(norm);
  if (!m) {
    throw new Error(
      `prompt "${prompt}" is outside the shapes grammar: expected "a {size} {color} {shape} on a {bg} background"`,
    );
  }
  const [, size, color, shape, bg] = m;
  if (!(SIZES as readonly string[]).includes(size)) {
    throw new Error(`prompt "${prompt}": unknown size "${size}" (one of ${SIZES.join(", ")})`);
  }
  if (!Object.hasOwn(COLORS, color)) {
    throw new Error(`prompt "${prompt}": unknown color "${color}" (one of ${COLOR_NAMES.join(", ")})`);
  }
  if (!(SHAPES as readonly string[]).includes(shape)) {
    throw new Error(`prompt "${prompt}": unknown shape "${shape}" (one of ${SHAPES.join(", ")})`);
  }
  if (!Object.hasOwn(BACKGROUNDS, bg)) {
    throw new Error(`prompt "${prompt}": unknown background "${bg}" (one of ${BACKGROUND_NAMES.join(", ")})`);
  }
  const parsed: ShapesPrompt = {
    size: size as SizeName,
    color: color as ColorName,
    shape: shape as ShapeName,
    bg: bg as BackgroundName,
  };
  if (!isAllowedPair(parsed.color, parsed.bg)) {
    throw new Error(
      `prompt "${prompt}": ${parsed.color} on ${parsed.bg} has contrast ` +
        `${colorDistance(COLORS[parsed.color], BACKGROUNDS[parsed.bg]).toFixed(3)} < ${MIN_CONTRAST}, not in the grammar`,
    );
  }
  return parsed;
}

/** Parses a prompt, or returns it unchanged when it is already parsed. */
export function toShapesPrompt(prompt: string | ShapesPrompt): ShapesPrompt {
  if (typeof prompt === "string") return parseShapesPrompt(prompt);
  if (
    prompt === null ||
    typeof prompt !== "object" ||
    !Object.hasOwn(SIZE_RADIUS, prompt.size) ||
    !Object.hasOwn(COLORS, prompt.color) ||
    !(SHAPES as readonly string[]).includes(prompt.shape) ||
    !Object.hasOwn(BACKGROUNDS, prompt.bg)
  ) {
    throw new Error(`not a shapes prompt: ${JSON.stringify(prompt)}`);
  }
  if (!isAllowedPair(prompt.color, prompt.bg)) {
    throw new Error(`${prompt.color} on ${prompt.bg} is below the contrast threshold, not in the grammar`);
  }
  return prompt;
}

/** Which prompt set a (shape, color, bg) combination belongs to. */
export type ShapesSplit = "train" | "test";

/**
 * The held-out rule: a combination is a test combination iff
 * (shapeIndex + colorIndex + bgIndex) mod 5 = 0 (indices in palette order).
 * For each (shape, color) exactly one background index satisfies it, so every held-out
 * combination is a new composition of a shape, a color and a background that all appear,
 * in other combinations, in training. With the five low-contrast pairs dropped this holds out 21 of the 105 combinations (20 %).
 */
export function comboSplit(shape: ShapeName, color: ColorName, bg: BackgroundName): ShapesSplit {
  const s = SHAPES.indexOf(shape);
  const c = COLOR_NAMES.indexOf(color);
  const b = BACKGROUND_NAMES.indexOf(bg);
  if (s < 0 || c < 0 || b < 0) throw new Error(`comboSplit: unknown combination ${shape}/${color}/${bg}`);
  return (s + c + b) % 5 === 0 ? "test" : "train";
}

/** All prompts of the grammar (every size, shape and allowed (color, bg) pair), in a fixed order. */
export function allShapesPrompts(): ShapesPrompt[] {
  const out: ShapesPrompt[] = [];
  for (const shape of SHAPES) {
    for (const color of COLOR_NAMES) {
      for (const bg of BACKGROUND_NAMES) {
        if (!isAllowedPair(color, bg)) continue;
        for (const size of SIZES) out.push({ size, color, shape, bg });
      }
    }
  }
  return out;
}

/** The prompts of one split ("train" or "test"), or the whole grammar ("all"), in a fixed order. */
export function shapesPrompts(split: ShapesSplit | "all"): ShapesPrompt[] {
  if (split !== "train" && split !== "test" && split !== "all") {
    throw new Error(`shapesPrompts: split must be "train", "test" or "all", got ${JSON.stringify(split)}`);
  }
  const all = allShapesPrompts();
  if (split === "all") return all;
  return all.filter((p) => comboSplit(p.shape, p.color, p.bg) === split);
}
