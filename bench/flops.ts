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
  const u = cfg.unet;
  const L = cfg.text.maxLength;
  let flops = 0;
  let params = 0;
  const conv = (hw: number, k: number, cin: number, cout: number) => {
    flops += 2 * hw * k * k * cin * cout;
    params += k * k * cin * cout + cout;
  };
  const norm = (c: number) => {
    params += 2 * c;
  };
  const dense = (rows: number, cin: number, cout: number, bias: boolean) => {
    flops += 2 * rows * cin * cout;
    params += cin * cout + (bias ? cout : 0);
  };
  const tdim = u.timeEmbedDim;
  dense(1, u.baseChannels, tdim, true);
  dense(1, tdim, tdim, true);
  // The pooled prompt (mean of the real tokens) projected into the timestep embedding.
  flops += L * u.textDim;
  dense(1, u.textDim, tdim, true);
  const res = (hw: number, cin: number, cout: number) => {
    norm(cin);
    conv(hw, 3, cin, cout);
    dense(1, tdim, cout, true);
    norm(cout);
    conv(hw, 3, cout, cout);
    if (cin !== cout) dense(hw, cin, cout, true);
  };
  const attn = (hw: number, ch: number) => {
    norm(ch);
    dense(hw, ch, ch, false);
    dense(L, u.textDim, ch, false);
    dense(L, u.textDim, ch, false);
    // Scores and weighted values: heads × (hw × L × d) multiply-adds each, d = ch / heads.
    flops += 2 * 2 * hw * L * ch;
    dense(hw, ch, ch, true);
  };
  const levels = u.channelMult.length;
  let size = u.imageSize;
  conv(size * size, 3, u.inChannels + u.condChannels, u.baseChannels);
  const skips: number[] = [u.baseChannels];
  let ch = u.baseChannels;
  for (let i = 0; i < levels; i++) {
    const out = u.baseChannels * u.channelMult[i];
    for (let j = 0; j < u.numResBlocks; j++) {
      res(size * size, ch, out);
      ch = out;
      if (u.attentionResolutions.includes(size)) attn(size * size, ch);
      skips.push(ch);
    }
    if (i < levels - 1) {
      size /= 2;
      conv(size * size, 3, ch, ch);
      skips.push(ch);
    }
  }
  res(size * size, ch, ch);
  if (u.midAttention) attn(size * size, ch);
  res(size * size, ch, ch);
  for (let i = levels - 1; i >= 0; i--) {
    const out = u.baseChannels * u.channelMult[i];
    for (let j = 0; j <= u.numResBlocks; j++) {
      const skip = skips.pop();
      if (skip == null) throw new Error("modelCost: skip stack underflow");
      res(size * size, ch + skip, out);
      ch = out;
      if (u.attentionResolutions.includes(size)) attn(size * size, ch);
    }
    if (i > 0) {
      size *= 2;
      conv(size * size, 3, ch, ch);
    }
  }
  norm(ch);
  conv(size * size, 3, ch, u.outChannels);
  const unetFlops = flops;
  const unetParams = params;

  flops = 0;
  params = 0;
  const t = cfg.text;
  const d = t.dim;
  params += t.vocab.length * d + L * d;
  for (let i = 0; i < t.layers; i++) {
    norm(d);
    dense(L, d, 3 * d, true);
    flops += 2 * 2 * L * L * d;
    dense(L, d, d, true);
    norm(d);
    dense(L, d, d * t.mlpRatio, true);
    dense(L, d * t.mlpRatio, d, true);
  }
  norm(d);
  return { unetFlops, textFlops: flops, unetParams, textParams: params };
}
