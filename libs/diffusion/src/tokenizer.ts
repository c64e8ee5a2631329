import { readFileSync } from "node:fs";

/** Padding token: fills positions past the prompt's end; the empty prompt is all padding. */
export const PAD_TOKEN = "[PAD]";
/** Out-of-vocabulary words map to this token. */
export const UNK_TOKEN = "[UNK]";

/** Token ids and key mask for a batch of prompts, row-major `[n, maxLength]`. */
export interface TokenBatch {
  /** Number of prompts. */
  n: number;
  /** Positions per prompt (the tokenizer's fixed length). */
  length: number;
  /** Token ids, `n * length`. */
  ids: Int32Array;
  /** 1 for a real token, 0 for padding, `n * length`. An all-zero row is the null condition. */
  mask: Float32Array;
}

/**
 * Word-level tokenizer: lowercase, split on anything that is not a letter, look each word up in a
 * fixed vocabulary, pad or truncate to a fixed length. Index 0 must be [PAD] and index 1 [UNK].
 */
export class Tokenizer {
  /** The vocabulary, index = token id. */
  readonly vocab: readonly string[];
  /** Fixed number of positions per prompt. */
  readonly maxLength: number;
  private readonly index: Map<string, number>;

  constructor(vocab: readonly string[], maxLength: number) {
    if (vocab[0] !== PAD_TOKEN || vocab[1] !== UNK_TOKEN) {
      throw new Error(`Tokenizer: vocabulary must start with ${PAD_TOKEN} then ${UNK_TOKEN}`);
    }
    if (!Number.isInteger(maxLength) || maxLength < 1) {
      throw new Error(`Tokenizer: maxLength must be a positive integer, got ${maxLength}`);
    }
    this.index = new Map();
    for (let i = 0; i < vocab.length; i++) {
      const w = vocab[i];
      if (i >= 2 && !/^[a-z]+$/.test(w)) {
        throw new Error(
          `Tokenizer: vocabulary word ${JSON.stringify(w)} (line ${i + 1}) is not lowercase letters`,
        );
      }
      if (this.index.has(w)) throw new Error(`Tokenizer: duplicate vocabulary word ${JSON.stringify(w)}`);
      this.index.set(w, i);
    }
    this.vocab = [...vocab];
    this.maxLength = maxLength;
  }

  /** Vocabulary size. */
  get size(): number {
    return this.vocab.length;
  }

  /** The words of a prompt, as the tokenizer sees them (before truncation). */
  words(prompt: string): string[] {
    return prompt
      .toLowerCase()
      .split(/[^a-z]+/)
      .filter((w) => w.length > 0);
  }

  /** Token ids of one prompt without padding, truncated to maxLength. */
  encodeOne(prompt: string): number[] {
    if (typeof prompt !== "string")
      throw new Error(`Tokenizer: prompt must be a string, got ${typeof prompt}`);
    const ids: number[] = [];
    for (const w of this.words(prompt)) {
      if (ids.length === this.maxLength) break;
      ids.push(this.index.get(w) ?? 1);
    }
    return ids;
  }

  /** Encodes a batch of prompts to padded ids plus a mask ("" gives the null condition). */
  encode(prompts: readonly string[]): TokenBatch {
    const n = prompts.length;
    const L = this.maxLength;
    const ids = new Int32Array(n * L);
    const mask = new Float32Array(n * L);
    for (let i = 0; i < n; i++) {
      const one = this.encodeOne(prompts[i]);
      for (let j = 0; j < one.length; j++) {
        ids[i * L + j] = one[j];
        mask[i * L + j] = 1;
      }
    }
    return { n, length: L, ids, mask };
  }

  /** Decodes ids back to words (padding dropped). */
  decode(ids: ArrayLike<number>): string {
    const out: string[] = [];
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (id === 0) continue;
      const w = this.vocab[id];
      if (w === undefined) throw new Error(`Tokenizer: id ${id} is outside the vocabulary of ${this.size}`);
      out.push(w);
    }
    return out.join(" ");
  }
}

/** Parses a vocabulary file: one token per line, blank lines ignored. */
export function parseVocabulary(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** Reads a vocabulary file from disk. */
export function loadVocabulary(path: string | URL): string[] {
  return parseVocabulary(readFileSync(path, "utf8"));
}

/** Path of the shapes-world vocabulary shipped with the library. */
export const SHAPES_VOCAB_URL = new URL("../vocab/shapes.txt", import.meta.url);

let shapesVocab: string[] | undefined;

/** The shapes-world vocabulary (its words, docs/architecture.md, plus [PAD] and [UNK]), read once. */
export function shapesVocabulary(): string[] {
  shapesVocab ??= loadVocabulary(SHAPES_VOCAB_URL);
  return [...shapesVocab];
}
