import type { DiffusionConfig } from "@idpo/diffusion";

/**
 * Analytic cost of the diffusion model's forward pass, counted from the architecture (the layer walk of
 * libs/diffusion/src/unet.ts and text-encoder.ts). FLOPs count a multiply-add as 2 and include every
 * convolution, linear layer and attention product; normalisations, activations, biases and other
 * elementwise work are left out (well under 5 % here). The embedding lookup costs nothing (tfjs does it
 * as a one-hot product, but that is an implementation choice, not the model's work).
 *
 * Parameters are enumerated along the way so that the walk can be checked against a real model: equal
 * parameter counts mean the walk saw the same layers.
 */
export interface ModelCost {
  /** UNet forward FLOPs per image (excluding the text encoder). */
  unetFlops: number;
  /** Text encoder forward FLOPs per prompt. */
  textFlops: number;
  /** UNet parameters. */
  unetParams: number;
  /** Text encoder parameters. */
  textParams: number;
}

export function modelCost(cfg: DiffusionConfig): ModelCost {
  const unet = unetCost(cfg);
  const text = textCost(cfg);
  return { unetFlops: unet.flops, textFlops: text.flops, unetParams: unet.params, textParams: text.params };
}

/** FLOPs and parameters summed over a walk of layers. */
class CostCounter {
  flops = 0;
  params = 0;

  conv(hw: number, k: number, cin: number, cout: number): void {
    this.flops += 2 * hw * k * k * cin * cout;
    this.params += k * k * cin * cout + cout;
  }

  norm(c: number): void {
    this.params += 2 * c;
  }

  dense(rows: number, cin: number, cout: number, bias: boolean): void {
    this.flops += 2 * rows * cin * cout;
    this.params += cin * cout + (bias ? cout : 0);
  }
}

/** The UNet's layer walk, with what every block of it reads. */
interface UNetWalk {
  c: CostCounter;
  cfg: DiffusionConfig;
}

function unetCost(cfg: DiffusionConfig): CostCounter {
  const u = cfg.unet;
  const c = new CostCounter();
  const w: UNetWalk = { c, cfg };
  const tdim = u.timeEmbedDim;
  c.dense(1, u.baseChannels, tdim, true);
  c.dense(1, tdim, tdim, true);
  // The pooled prompt (mean of the real tokens) projected into the timestep embedding.
  c.flops += cfg.text.maxLength * u.textDim;
  c.dense(1, u.textDim, tdim, true);
  c.conv(u.imageSize * u.imageSize, 3, u.inChannels + u.condChannels, u.baseChannels);
  const down = downCost(w);
  const mid = down.size * down.size;
  resCost(w, mid, down.ch, down.ch);
  if (u.midAttention) attnCost(w, mid, down.ch);
  resCost(w, mid, down.ch, down.ch);
  const { ch, size } = upCost(w, down);
  c.norm(ch);
  c.conv(size * size, 3, ch, u.outChannels);
  return c;
}

function resCost(w: UNetWalk, hw: number, cin: number, cout: number): void {
  const { c } = w;
  c.norm(cin);
  c.conv(hw, 3, cin, cout);
  c.dense(1, w.cfg.unet.timeEmbedDim, cout, true);
  c.norm(cout);
  c.conv(hw, 3, cout, cout);
  if (cin !== cout) c.dense(hw, cin, cout, true);
}

function attnCost(w: UNetWalk, hw: number, ch: number): void {
  const { c } = w;
  const L = w.cfg.text.maxLength;
  const textDim = w.cfg.unet.textDim;
  c.norm(ch);
  c.dense(hw, ch, ch, false);
  c.dense(L, textDim, ch, false);
  c.dense(L, textDim, ch, false);
  // Scores and weighted values: heads × (hw × L × d) multiply-adds each, d = ch / heads.
  c.flops += 2 * 2 * hw * L * ch;
  c.dense(hw, ch, ch, true);
}

/** The down levels; returns the channels and side at the bottom and the skips' channel counts. */
function downCost(w: UNetWalk): { ch: number; size: number; skips: number[] } {
  const u = w.cfg.unet;
  const levels = u.channelMult.length;
  let size = u.imageSize;
  const skips: number[] = [u.baseChannels];
  let ch = u.baseChannels;
  for (let i = 0; i < levels; i++) {
    const out = u.baseChannels * u.channelMult[i];
    for (let j = 0; j < u.numResBlocks; j++) {
      resCost(w, size * size, ch, out);
      ch = out;
      if (u.attentionResolutions.includes(size)) attnCost(w, size * size, ch);
      skips.push(ch);
    }
    if (i < levels - 1) {
      size /= 2;
      w.c.conv(size * size, 3, ch, ch);
      skips.push(ch);
    }
  }
  return { ch, size, skips };
}

/** The up levels from the bottom's channels and side, popping the skips; returns the top's channels and side. */
function upCost(
  w: UNetWalk,
  bottom: { ch: number; size: number; skips: number[] },
): { ch: number; size: number } {
  const u = w.cfg.unet;
  const { skips } = bottom;
  let { ch, size } = bottom;
  for (let i = u.channelMult.length - 1; i >= 0; i--) {
    const out = u.baseChannels * u.channelMult[i];
    for (let j = 0; j <= u.numResBlocks; j++) {
      const skip = skips.pop();
      if (skip == null) throw new Error("modelCost: skip stack underflow");
      resCost(w, size * size, ch + skip, out);
      ch = out;
      if (u.attentionResolutions.includes(size)) attnCost(w, size * size, ch);
    }
    if (i > 0) {
      size *= 2;
      w.c.conv(size * size, 3, ch, ch);
    }
  }
  return { ch, size };
}

function textCost(cfg: DiffusionConfig): CostCounter {
  const c = new CostCounter();
  const t = cfg.text;
  const L = t.maxLength;
  const d = t.dim;
  c.params += t.vocab.length * d + L * d;
  for (let i = 0; i < t.layers; i++) {
    c.norm(d);
    c.dense(L, d, 3 * d, true);
    c.flops += 2 * 2 * L * L * d;
    c.dense(L, d, d, true);
    c.norm(d);
    c.dense(L, d, d * t.mlpRatio, true);
    c.dense(L, d * t.mlpRatio, d, true);
  }
  c.norm(d);
  return c;
}
