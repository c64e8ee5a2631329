import * as tf from "@tensorflow/tfjs-core";
import { silu } from "./activations.js";
import { multiHeadAttention } from "./attention.js";
import { linear, linearLastAxis } from "./linear.js";
import { groupNormAct } from "./norm.js";
import { type ParamBuilder, type Params, param } from "./params.js";
import type { TextEmbedding } from "./text-encoder.js";
import { timestepEmbedding } from "./timestep-embedding.js";

/** Architecture of the pixel-space conditional UNet (guided-diffusion layout, NHWC). */
export interface UNetConfig {
  /** Side S of the square input images, in pixels; must be divisible by 2^(levels − 1). */
  imageSize: number;
  /** Channels of the noisy input x_t (3 for RGB pixel space, a latent codec's channels otherwise). */
  inChannels: number;
  /** Channels of the condition image concatenated to x_t: 0 for a text-to-image policy, 3 for the improver. */
  condChannels: number;
  /** Channels of the ε prediction (= inChannels). */
  outChannels: number;
  /** Width of the first level; level i has baseChannels · channelMult[i] channels. */
  baseChannels: number;
  /** Width multiplier per resolution level; its length is the number of levels (each but the last halves S). */
  channelMult: number[];
  /** ResBlocks per level on the way down (the way up has one more, as in guided-diffusion). */
  numResBlocks: number;
  /** Spatial sizes (e.g. [8, 4]) at which each ResBlock is followed by cross-attention to the text tokens. */
  attentionResolutions: number[];
  /** Whether the middle block has cross-attention between its two ResBlocks. */
  midAttention: boolean;
  /** GroupNorm groups; must divide every level's width. */
  groups: number;
  /** Width of the timestep embedding MLP's output (the sinusoid itself has baseChannels dims). */
  timeEmbedDim: number;
  /** Width of the text tokens attended to (= the text encoder's dim). */
  textDim: number;
  /** Cross-attention heads; must divide the width of every attended level. */
  heads: number;
}

/** Throws with the offending field unless the config is usable. */
export function validateUNetConfig(cfg: UNetConfig): void {
  const pos: (keyof UNetConfig)[] = [
    "imageSize",
    "inChannels",
    "outChannels",
    "baseChannels",
    "numResBlocks",
    "groups",
    "timeEmbedDim",
    "textDim",
    "heads",
  ];
  for (const k of pos) {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new Error(`unet config: ${k} must be a positive integer, got ${JSON.stringify(v)}`);
    }
  }
  if (!Number.isInteger(cfg.condChannels) || cfg.condChannels < 0) {
    throw new Error(`unet config: condChannels must be a non-negative integer, got ${cfg.condChannels}`);
  }
  if (!Array.isArray(cfg.channelMult) || cfg.channelMult.length < 1) {
    throw new Error("unet config: channelMult must list at least one level");
  }
  if (
    !Array.isArray(cfg.attentionResolutions) ||
    !cfg.attentionResolutions.every((r) => Number.isInteger(r) && r > 0)
  ) {
    throw new Error("unet config: attentionResolutions must be a list of positive integers (spatial sizes)");
  }
  if (typeof cfg.midAttention !== "boolean") throw new Error("unet config: midAttention must be a boolean");
  const levels = cfg.channelMult.length;
  if (cfg.imageSize % 2 ** (levels - 1) !== 0) {
    throw new Error(
      `unet config: imageSize ${cfg.imageSize} is not divisible by 2^${levels - 1} (${levels} levels)`,
    );
  }
  if (cfg.baseChannels % 2 !== 0)
    throw new Error(`unet config: baseChannels must be even, got ${cfg.baseChannels}`);
  for (let i = 0; i < levels; i++) {
    const m = cfg.channelMult[i];
    if (!Number.isInteger(m) || m < 1)
      throw new Error(`unet config: channelMult[${i}] = ${m} is not a positive integer`);
    const ch = cfg.baseChannels * m;
    if (ch % cfg.groups !== 0)
      throw new Error(`unet config: level ${i} width ${ch} is not divisible by groups ${cfg.groups}`);
    const res = cfg.imageSize / 2 ** i;
    if (
      (cfg.attentionResolutions.includes(res) || (cfg.midAttention && i === levels - 1)) &&
      ch % cfg.heads !== 0
    ) {
      throw new Error(`unet config: level ${i} width ${ch} is not divisible by heads ${cfg.heads}`);
    }
  }
  if (cfg.baseChannels % cfg.groups !== 0) {
    throw new Error(`unet config: baseChannels ${cfg.baseChannels} not divisible by groups ${cfg.groups}`);
  }
}

/** Visits the UNet's blocks in order; shared by parameter creation and the forward pass. */
interface UNetVisitor<H> {
  convIn(h: H): H;
  res(prefix: string, h: H, cin: number, cout: number): H;
  attn(prefix: string, h: H, ch: number): H;
  down(prefix: string, h: H, ch: number): H;
  up(prefix: string, h: H, ch: number): H;
  concatSkip(h: H, skip: H): H;
  out(h: H, ch: number): H;
}

function walkUNet<H>(cfg: UNetConfig, v: UNetVisitor<H>, input: H): H {
  const levels = cfg.channelMult.length;
  let h = v.convIn(input);
  const skips: { h: H; ch: number }[] = [{ h, ch: cfg.baseChannels }];
  let ch = cfg.baseChannels;
  let res = cfg.imageSize;
  for (let i = 0; i < levels; i++) {
    const out = cfg.baseChannels * cfg.channelMult[i];
    for (let j = 0; j < cfg.numResBlocks; j++) {
      h = v.res(`unet.down.${i}.res.${j}`, h, ch, out);
      ch = out;
      if (cfg.attentionResolutions.includes(res)) h = v.attn(`unet.down.${i}.attn.${j}`, h, ch);
      skips.push({ h, ch });
    }
    if (i < levels - 1) {
      h = v.down(`unet.down.${i}.downsample`, h, ch);
      res /= 2;
      skips.push({ h, ch });
    }
  }
  h = v.res("unet.mid.res.0", h, ch, ch);
  if (cfg.midAttention) h = v.attn("unet.mid.attn", h, ch);
  h = v.res("unet.mid.res.1", h, ch, ch);
  for (let i = levels - 1; i >= 0; i--) {
    const out = cfg.baseChannels * cfg.channelMult[i];
    for (let j = 0; j <= cfg.numResBlocks; j++) {
      const skip = skips.pop();
      if (!skip) throw new Error("unet: skip stack underflow");
      h = v.concatSkip(h, skip.h);
      h = v.res(`unet.up.${i}.res.${j}`, h, ch + skip.ch, out);
      ch = out;
      if (cfg.attentionResolutions.includes(res)) h = v.attn(`unet.up.${i}.attn.${j}`, h, ch);
    }
    if (i > 0) {
      h = v.up(`unet.up.${i}.upsample`, h, ch);
      res *= 2;
    }
  }
  return v.out(h, ch);
}

/**
 * Each prompt's pooling weights over its token positions, `[n, length]`: 1/count on its real tokens
 * (all positions, 1/length, for the null prompt, matching the attention rule).
 */
export function poolingWeights(mask: Float32Array, n: number, length: number): Float32Array {
  const w = new Float32Array(n * length);
  for (let i = 0; i < n; i++) {
    let count = 0;
    for (let j = 0; j < length; j++) count += mask[i * length + j] > 0 ? 1 : 0;
    for (let j = 0; j < length; j++) {
      w[i * length + j] = count === 0 ? 1 / length : mask[i * length + j] > 0 ? 1 / count : 0;
    }
  }
  return w;
}

/**
 * `[n, n·length]` block matrix whose product with the token rows is each prompt's mean over its real
 * tokens (poolingWeights on the block diagonal). Built on the host: a 2-D matmul instead of a masked
 * reduction.
 */
function poolingMatrix(text: TextEmbedding): tf.Tensor2D {
  const { n, length, mask } = text;
  const w = poolingWeights(mask, n, length);
  const m = new Float32Array(n * n * length);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < length; j++) m[i * n * length + i * length + j] = w[i * length + j];
  }
  return tf.tensor2d(m, [n, n * length]);
}

/**
 * 2× nearest-neighbour upsampling as a broadcast (reshape, add zeros, reshape): its gradient is a
 * plain sum. tfjs-backend-cpu's ResizeNearestNeighborGrad is wrong for batches larger than one.
 */
export function upsampleNearest(h: tf.Tensor4D): tf.Tensor4D {
  const [n, hh, ww, c] = h.shape;
  const spread = tf.add(tf.reshape(h, [n, hh, 1, ww, 1, c]), tf.zeros([1, 1, 2, 1, 2, 1]));
  return tf.reshape(spread, [n, hh * 2, ww * 2, c]);
}

/**
 * Creates the UNet's variables under the prefix `unet.`. The output conv, each ResBlock's second
 * conv and each attention output projection start at zero (guided-diffusion's zero_module), so
 * every block starts as the identity and the initial ε prediction is 0.
 */
export function buildUNetParams(b: ParamBuilder, cfg: UNetConfig): void {
  validateUNetConfig(cfg);
  const tdim = cfg.timeEmbedDim;
  const conv = (name: string, k: number, cin: number, cout: number, zero = false) => {
    if (zero) b.zeros(`${name}.w`, [k, k, cin, cout]);
    else b.fanIn(`${name}.w`, [k, k, cin, cout], k * k * cin);
    b.zeros(`${name}.b`, [cout]);
  };
  const norm = (name: string, c: number) => {
    b.ones(`${name}.g`, [c]);
    b.zeros(`${name}.b`, [c]);
  };
  b.fanIn("unet.time.fc1.w", [cfg.baseChannels, tdim], cfg.baseChannels);
  b.zeros("unet.time.fc1.b", [tdim]);
  b.fanIn("unet.time.fc2.w", [tdim, tdim], tdim);
  b.zeros("unet.time.fc2.b", [tdim]);
  b.fanIn("unet.text_pool.w", [cfg.textDim, tdim], cfg.textDim);
  b.zeros("unet.text_pool.b", [tdim]);
  walkUNet<null>(
    cfg,
    {
      convIn: () => {
        conv("unet.conv_in", 3, cfg.inChannels + cfg.condChannels, cfg.baseChannels);
        return null;
      },
      res: (p, _h, cin, cout) => {
        norm(`${p}.norm1`, cin);
        conv(`${p}.conv1`, 3, cin, cout);
        b.fanIn(`${p}.temb.w`, [tdim, cout], tdim);
        b.zeros(`${p}.temb.b`, [cout]);
        norm(`${p}.norm2`, cout);
        conv(`${p}.conv2`, 3, cout, cout, true);
        if (cin !== cout) {
          b.fanIn(`${p}.skip.w`, [cin, cout], cin);
          b.zeros(`${p}.skip.b`, [cout]);
        }
        return null;
      },
      attn: (p, _h, ch) => {
        norm(`${p}.norm`, ch);
        b.fanIn(`${p}.q.w`, [ch, ch], ch);
        b.fanIn(`${p}.k.w`, [cfg.textDim, ch], cfg.textDim);
        b.fanIn(`${p}.v.w`, [cfg.textDim, ch], cfg.textDim);
        b.zeros(`${p}.out.w`, [ch, ch]);
        b.zeros(`${p}.out.b`, [ch]);
        return null;
      },
      down: (p, _h, ch) => {
        conv(p, 3, ch, ch);
        return null;
      },
      up: (p, _h, ch) => {
        conv(p, 3, ch, ch);
        return null;
      },
      concatSkip: () => null,
      out: (_h, ch) => {
        norm("unet.norm_out", ch);
        conv("unet.conv_out", 3, ch, cfg.outChannels, true);
        return null;
      },
    },
    null,
  );
}

/**
 * ε prediction of the UNet. `x` is `[n, S, S, inChannels]`, `cond` `[n, S, S, condChannels]`
 * (required iff condChannels > 0), `t` holds n integer timesteps, `text` the encoded prompts (n of them).
 * Callers validate shapes (DiffusionModel.predictEps does).
 */
export function unetForward(
  params: Params,
  cfg: UNetConfig,
  x: tf.Tensor4D,
  t: ArrayLike<number>,
  text: TextEmbedding,
  cond?: tf.Tensor4D,
): tf.Tensor4D {
  return tf.tidy(() => {
    const p = (name: string) => param(params, name);
    const n = x.shape[0];
    const sinus = timestepEmbedding(t, cfg.baseChannels);
    // The pooled prompt is added to the timestep embedding (as Imagen and SDXL do): a direct, global
    // conditioning path next to cross-attention, so global attributes (colour, size) are easy to learn.
    const pooled = linear(poolingMatrix(text), text.tokens);
    const temb = tf.add(
      linear(
        silu(linear(sinus, p("unet.time.fc1.w"), p("unet.time.fc1.b"))),
        p("unet.time.fc2.w"),
        p("unet.time.fc2.b"),
      ),
      linear(pooled, p("unet.text_pool.w"), p("unet.text_pool.b")),
    ) as tf.Tensor2D;
    // Every ResBlock consumes SiLU(temb); compute it once.
    const tact = silu(temb);
    const conv = (name: string, h: tf.Tensor4D, stride = 1): tf.Tensor4D =>
      tf.fused.conv2d({
        x: h,
        filter: p(`${name}.w`) as tf.Tensor4D,
        bias: p(`${name}.b`),
        strides: stride,
        pad: "same",
      });
    const gnSilu = (name: string, h: tf.Tensor4D) =>
      groupNormAct(h, cfg.groups, p(`${name}.g`), p(`${name}.b`), "silu");
    const input = cond ? tf.concat([x, cond], 3) : x;
    return walkUNet<tf.Tensor4D>(
      cfg,
      {
        convIn: (h) => conv("unet.conv_in", h),
        res: (q, h, cin, cout) => {
          let y = conv(`${q}.conv1`, gnSilu(`${q}.norm1`, h));
          const tproj = linear(tact, p(`${q}.temb.w`), p(`${q}.temb.b`));
          y = tf.add(y, tf.reshape(tproj, [n, 1, 1, cout]));
          y = conv(`${q}.conv2`, gnSilu(`${q}.norm2`, y));
          const skip =
            cin === cout ? h : (linearLastAxis(h, p(`${q}.skip.w`), p(`${q}.skip.b`)) as tf.Tensor4D);
          return tf.add(skip, y);
        },
        attn: (q, h, ch) => {
          const [, hh, ww] = h.shape;
          const normed = groupNormAct(h, cfg.groups, p(`${q}.norm.g`), p(`${q}.norm.b`), "none");
          const rows = tf.reshape(normed, [n * hh * ww, ch]) as tf.Tensor2D;
          const qq = linear(rows, p(`${q}.q.w`));
          const kk = linear(text.tokens, p(`${q}.k.w`));
          const vv = linear(text.tokens, p(`${q}.v.w`));
          const att = multiHeadAttention(qq, kk, vv, n, hh * ww, text.length, cfg.heads, text.bias);
          const out = linear(att, p(`${q}.out.w`), p(`${q}.out.b`));
          return tf.add(h, tf.reshape(out, [n, hh, ww, ch]));
        },
        down: (q, h) => conv(q, h, 2),
        up: (q, h) => conv(q, upsampleNearest(h)),
        concatSkip: (h, skip) => tf.concat([h, skip], 3),
        out: (h) => conv("unet.conv_out", gnSilu("unet.norm_out", h)),
      },
      input,
    );
  });
}
