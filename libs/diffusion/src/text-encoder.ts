import * as tf from "@tensorflow/tfjs-core";
import { gelu } from "./activations.js";
import { keyBias, multiHeadAttention } from "./attention.js";
import { linear } from "./linear.js";
import { layerNorm } from "./norm.js";
import { type ParamBuilder, type Params, param } from "./params.js";
import type { TokenBatch } from "./tokenizer.js";

/** Architecture of the text encoder: token + position embeddings and a small pre-LN transformer. */
export interface TextEncoderConfig {
  /** Vocabulary, index = token id; must start with [PAD], [UNK]. Stored so checkpoints are self-contained. */
  vocab: string[];
  /** Fixed number of token positions per prompt (longer prompts are truncated). */
  maxLength: number;
  /** Width of the embeddings and of every transformer layer; the UNet's cross-attention keys come from it. */
  dim: number;
  /** Number of transformer blocks (0 = embeddings + final LayerNorm only). */
  layers: number;
  /** Attention heads per block; must divide dim. */
  heads: number;
  /** MLP hidden width as a multiple of dim. */
  mlpRatio: number;
}

/**
 * Encoded prompts, as the UNet's cross-attention consumes them. Owns its tensors: call dispose()
 * (or create it inside tf.tidy).
 */
export interface TextEmbedding {
  /** Number of prompts. */
  n: number;
  /** Token positions per prompt. */
  length: number;
  /** Token features `[n * length, dim]` (rows grouped by prompt). */
  tokens: tf.Tensor2D;
  /** Additive key bias `[n, 1, 1, length]`: 0 for real tokens, −1e9 for padding (null prompt: all 0). */
  bias: tf.Tensor4D;
  /** Key mask on the host, `n * length`: 1 for a real token, 0 for padding. */
  mask: Float32Array;
}

/** Throws with the offending field unless the config is usable. */
export function validateTextEncoderConfig(cfg: TextEncoderConfig): void {
  const ints: (keyof TextEncoderConfig)[] = ["maxLength", "dim", "heads", "mlpRatio"];
  for (const k of ints) {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new Error(`text config: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  if (!Number.isInteger(cfg.layers) || cfg.layers < 0) {
    throw new Error(`text config: layers must be a non-negative integer, got ${cfg.layers}`);
  }
  if (cfg.dim % cfg.heads !== 0)
    throw new Error(`text config: dim ${cfg.dim} is not divisible by heads ${cfg.heads}`);
  if (!Array.isArray(cfg.vocab) || cfg.vocab.length < 3)
    throw new Error("text config: vocab must list the tokens");
}

/** Creates the text encoder's variables under the prefix `text.`. */
export function buildTextEncoderParams(b: ParamBuilder, cfg: TextEncoderConfig): void {
  const d = cfg.dim;
  const hidden = d * cfg.mlpRatio;
  b.normal("text.tok_emb", [cfg.vocab.length, d], 0.02);
  b.normal("text.pos_emb", [cfg.maxLength, d], 0.02);
  for (let i = 0; i < cfg.layers; i++) {
    const p = `text.blocks.${i}`;
    b.ones(`${p}.ln1.g`, [d]);
    b.zeros(`${p}.ln1.b`, [d]);
    b.fanIn(`${p}.qkv.w`, [d, 3 * d], d);
    b.zeros(`${p}.qkv.b`, [3 * d]);
    b.fanIn(`${p}.proj.w`, [d, d], d);
    b.zeros(`${p}.proj.b`, [d]);
    b.ones(`${p}.ln2.g`, [d]);
    b.zeros(`${p}.ln2.b`, [d]);
    b.fanIn(`${p}.fc1.w`, [d, hidden], d);
    b.zeros(`${p}.fc1.b`, [hidden]);
    b.fanIn(`${p}.fc2.w`, [hidden, d], hidden);
    b.zeros(`${p}.fc2.b`, [d]);
  }
  b.ones("text.ln_f.g", [d]);
  b.zeros("text.ln_f.b", [d]);
}

/**
 * Runs the text encoder on token ids. Embedding lookup is a one-hot × matrix product rather than
 * a gather: gather's gradient needs UnsortedSegmentSum, which the wasm backend lacks.
 */
export function encodeTokens(params: Params, cfg: TextEncoderConfig, batch: TokenBatch): TextEmbedding {
  const { n, length } = batch;
  if (length !== cfg.maxLength) {
    throw new Error(`encodeTokens: token batch has length ${length}, the encoder expects ${cfg.maxLength}`);
  }
  const vocab = cfg.vocab.length;
  const oneHot = new Float32Array(n * length * vocab);
  for (let i = 0; i < n * length; i++) {
    const id = batch.ids[i];
    if (id < 0 || id >= vocab)
      throw new Error(`encodeTokens: token id ${id} is outside the vocabulary of ${vocab}`);
    oneHot[i * vocab + id] = 1;
  }
  const bias = keyBias(batch.mask, n, length);
  const tokens = tf.tidy(() => {
    const d = cfg.dim;
    const p = (name: string) => param(params, name);
    const emb = linear(tf.tensor2d(oneHot, [n * length, vocab]), p("text.tok_emb"));
    let x = tf.reshape(tf.add(tf.reshape(emb, [n, length, d]), p("text.pos_emb")), [
      n * length,
      d,
    ]) as tf.Tensor2D;
    for (let i = 0; i < cfg.layers; i++) {
      const q = `text.blocks.${i}`;
      const h = layerNorm(x, p(`${q}.ln1.g`), p(`${q}.ln1.b`)) as tf.Tensor2D;
      const qkv = linear(h, p(`${q}.qkv.w`), p(`${q}.qkv.b`));
      const [qq, kk, vv] = tf.split(qkv, 3, 1) as tf.Tensor2D[];
      const att = multiHeadAttention(qq, kk, vv, n, length, length, cfg.heads, bias);
      x = tf.add(x, linear(att, p(`${q}.proj.w`), p(`${q}.proj.b`)));
      const h2 = layerNorm(x, p(`${q}.ln2.g`), p(`${q}.ln2.b`)) as tf.Tensor2D;
      const mlp = linear(
        gelu(linear(h2, p(`${q}.fc1.w`), p(`${q}.fc1.b`))),
        p(`${q}.fc2.w`),
        p(`${q}.fc2.b`),
      );
      x = tf.add(x, mlp);
    }
    return layerNorm(x, p("text.ln_f.g"), p("text.ln_f.b")) as tf.Tensor2D;
  });
  return { n, length, tokens, bias, mask: batch.mask };
}

/** Disposes a text embedding's tensors. */
export function disposeTextEmbedding(e: TextEmbedding): void {
  e.tokens.dispose();
  e.bias.dispose();
}
