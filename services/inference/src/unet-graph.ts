import type { UNetConfig } from "@idpo/diffusion";
import { GraphLayers, type Weights } from "./graph-layers.js";
import { type EncodedGraph, encodeGraph, OnnxGraphBuilder } from "./onnx-graph.js";

/**
 * The UNet as an ONNX graph, block for block the walk of unetForward in libs/diffusion.
 *
 * Inputs (n = batch, S = imageSize, L = text length, D = textDim):
 * - `x` `[n, S, S, inChannels]` (NHWC, model space);
 * - `cond` `[n, S, S, condChannels]` (improver only);
 * - `temb` `[n, baseChannels]`: the sinusoidal timestep embedding (timestepEmbeddingValues);
 * - `tokens` `[n, L, D]`: the text encoder's output;
 * - `bias` `[n, 1, 1, L]`: the additive key mask (keyBiasValues);
 * - `pool` `[n, L]`: each prompt's token pooling weights (poolingWeights).
 *
 * Output: `eps` `[n, S, S, outChannels]` (NHWC).
 */
export function buildUNetGraph(cfg: UNetConfig, weights: Weights, textLength: number): EncodedGraph {
  const b = new OnnxGraphBuilder("idpo_unet");
  const l = new GraphLayers(b, weights);
  const S = cfg.imageSize;
  const L = textLength;
  const x = b.input("x", ["n", S, S, cfg.inChannels]);
  const cond = cfg.condChannels > 0 ? b.input("cond", ["n", S, S, cfg.condChannels]) : null;
  const sinus = b.input("temb", ["n", cfg.baseChannels]);
  const tokens = b.input("tokens", ["n", L, cfg.textDim]);
  const bias = b.input("bias", ["n", 1, 1, L]);
  const pool = b.input("pool", ["n", L]);
  const tact = l.silu(timeEmbedding(b, l, cfg, sinus, tokens, pool));
  const walk: UNetWalk = { b, l, cfg, textLength: L, tokens, bias, tact };

  const input = cond ? b.op("Concat", [x, cond], { axis: { i: 3 } }) : x;
  const h = l.conv(b.op("Transpose", [input], { perm: { ints: [0, 3, 1, 2] } }), "unet.conv_in");
  const down = downPath(walk, h);
  const mid = midBlock(walk, down.out);
  const out = upPath(walk, mid, down.skips);
  const eps = l.conv(gnSilu(walk, "unet.norm_out", out.h, out.ch, out.side), "unet.conv_out");
  b.output(b.op("Transpose", [eps], { perm: { ints: [0, 2, 3, 1] } }), "eps", ["n", S, S, cfg.outChannels]);
  return encodeGraph(b);
}

/** What every block of the walk reads: the builder, its layers, the config and the shared graph inputs. */
interface UNetWalk {
  b: OnnxGraphBuilder;
  l: GraphLayers;
  cfg: UNetConfig;
  textLength: number;
  tokens: string;
  bias: string;
  /** SiLU(temb), which every ResBlock takes. */
  tact: string;
}

/** A feature map of the walk (NCHW), with its channel count and side. */
interface Feature {
  h: string;
  ch: number;
  side: number;
}

/** temb = fc2(SiLU(fc1(sinus))) + text_pool(mean of the real tokens). */
function timeEmbedding(
  b: OnnxGraphBuilder,
  l: GraphLayers,
  cfg: UNetConfig,
  sinus: string,
  tokens: string,
  pool: string,
): string {
  const pooled = b.op("Reshape", [
    b.op("MatMul", [b.op("Unsqueeze", [pool, b.int64s([1])]), tokens]),
    b.int64s([-1, cfg.textDim]),
  ]);
  return b.op("Add", [
    l.linear(
      l.silu(l.linear(sinus, "unet.time.fc1.w", "unet.time.fc1.b")),
      "unet.time.fc2.w",
      "unet.time.fc2.b",
    ),
    l.linear(pooled, "unet.text_pool.w", "unet.text_pool.b"),
  ]);
}

function gnSilu(w: UNetWalk, prefix: string, h: string, c: number, res: number): string {
  return w.l.silu(w.l.groupNorm(h, prefix, w.cfg.groups, c, res, res));
}

function resBlock(w: UNetWalk, q: string, h: string, cin: number, cout: number, side: number): string {
  const { b, l } = w;
  let y = l.conv(gnSilu(w, `${q}.norm1`, h, cin, side), `${q}.conv1`);
  const tproj = b.op("Reshape", [l.linear(w.tact, `${q}.temb.w`, `${q}.temb.b`), b.int64s([0, cout, 1, 1])]);
  y = b.op("Add", [y, tproj]);
  y = l.conv(gnSilu(w, `${q}.norm2`, y, cout, side), `${q}.conv2`);
  const skip = cin === cout ? h : l.conv1x1(h, `${q}.skip`);
  return b.op("Add", [skip, y]);
}

/** Cross-attention from the pixels to the text tokens, residual. */
function attnBlock(w: UNetWalk, q: string, h: string, ch: number, side: number): string {
  const { b, l, cfg } = w;
  const hw = side * side;
  const normed = l.groupNorm(h, `${q}.norm`, cfg.groups, ch, side, side);
  const rows = b.op("Transpose", [b.op("Reshape", [normed, b.int64s([0, ch, hw])])], {
    perm: { ints: [0, 2, 1] },
  });
  const att = l.attention(
    l.linear(rows, `${q}.q.w`),
    l.linear(w.tokens, `${q}.k.w`),
    l.linear(w.tokens, `${q}.v.w`),
    w.bias,
    {
      heads: cfg.heads,
      c: ch,
      queries: hw,
      keys: w.textLength,
    },
  );
  const out = l.linear(att, `${q}.out.w`, `${q}.out.b`);
  const back = b.op("Reshape", [
    b.op("Transpose", [out], { perm: { ints: [0, 2, 1] } }),
    b.int64s([0, ch, side, side]),
  ]);
  return b.op("Add", [h, back]);
}

/** The down levels from conv_in's output, with the skip connections they leave for the up path. */
function downPath(w: UNetWalk, convIn: string): { out: Feature; skips: { h: string; ch: number }[] } {
  const { cfg, l } = w;
  const levels = cfg.channelMult.length;
  let h = convIn;
  const skips: { h: string; ch: number }[] = [{ h, ch: cfg.baseChannels }];
  let ch = cfg.baseChannels;
  let side = cfg.imageSize;
  for (let i = 0; i < levels; i++) {
    const out = cfg.baseChannels * cfg.channelMult[i];
    for (let j = 0; j < cfg.numResBlocks; j++) {
      h = resBlock(w, `unet.down.${i}.res.${j}`, h, ch, out, side);
      ch = out;
      if (cfg.attentionResolutions.includes(side)) h = attnBlock(w, `unet.down.${i}.attn.${j}`, h, ch, side);
      skips.push({ h, ch });
    }
    if (i < levels - 1) {
      h = l.conv(h, `unet.down.${i}.downsample`, 2);
      side /= 2;
      skips.push({ h, ch });
    }
  }
  return { out: { h, ch, side }, skips };
}

function midBlock(w: UNetWalk, f: Feature): Feature {
  const { ch, side } = f;
  let h = resBlock(w, "unet.mid.res.0", f.h, ch, ch, side);
  if (w.cfg.midAttention) h = attnBlock(w, "unet.mid.attn", h, ch, side);
  h = resBlock(w, "unet.mid.res.1", h, ch, ch, side);
  return { h, ch, side };
}

/** The up levels, each ResBlock taking the next skip connection off the stack. */
function upPath(w: UNetWalk, f: Feature, skips: { h: string; ch: number }[]): Feature {
  const { b, l, cfg } = w;
  let { h, ch, side } = f;
  for (let i = cfg.channelMult.length - 1; i >= 0; i--) {
    const out = cfg.baseChannels * cfg.channelMult[i];
    for (let j = 0; j <= cfg.numResBlocks; j++) {
      const skip = skips.pop();
      if (!skip) throw new Error("onnx unet: skip stack underflow");
      h = resBlock(
        w,
        `unet.up.${i}.res.${j}`,
        b.op("Concat", [h, skip.h], { axis: { i: 1 } }),
        ch + skip.ch,
        out,
        side,
      );
      ch = out;
      if (cfg.attentionResolutions.includes(side)) h = attnBlock(w, `unet.up.${i}.attn.${j}`, h, ch, side);
    }
    if (i > 0) {
      // Nearest-neighbour 2× upsampling: output pixel (y, x) reads input (⌊y/2⌋, ⌊x/2⌋).
      const up = b.op("Resize", [h, "", b.floats("scales", [4], new Float32Array([1, 1, 2, 2]))], {
        mode: { s: "nearest" },
        coordinate_transformation_mode: { s: "asymmetric" },
        nearest_mode: { s: "floor" },
      });
      h = l.conv(up, `unet.up.${i}.upsample`);
      side *= 2;
    }
  }
  return { h, ch, side };
}
