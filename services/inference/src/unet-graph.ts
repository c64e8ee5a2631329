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

  // temb = fc2(SiLU(fc1(sinus))) + text_pool(mean of the real tokens); every ResBlock takes SiLU(temb).
  const pooled = b.op("Reshape", [
    b.op("MatMul", [b.op("Unsqueeze", [pool, b.int64s([1])]), tokens]),
    b.int64s([-1, cfg.textDim]),
  ]);
  const temb = b.op("Add", [
    l.linear(
      l.silu(l.linear(sinus, "unet.time.fc1.w", "unet.time.fc1.b")),
      "unet.time.fc2.w",
      "unet.time.fc2.b",
    ),
    l.linear(pooled, "unet.text_pool.w", "unet.text_pool.b"),
  ]);
  const tact = l.silu(temb);

  const gnSilu = (prefix: string, h: string, c: number, res: number) =>
    l.silu(l.groupNorm(h, prefix, cfg.groups, c, res, res));
  const res = (q: string, h: string, cin: number, cout: number, side: number): string => {
    let y = l.conv(gnSilu(`${q}.norm1`, h, cin, side), `${q}.conv1`);
    const tproj = b.op("Reshape", [l.linear(tact, `${q}.temb.w`, `${q}.temb.b`), b.int64s([0, cout, 1, 1])]);
    y = b.op("Add", [y, tproj]);
    y = l.conv(gnSilu(`${q}.norm2`, y, cout, side), `${q}.conv2`);
    const skip = cin === cout ? h : l.conv1x1(h, `${q}.skip`);
    return b.op("Add", [skip, y]);
  };
  const attn = (q: string, h: string, ch: number, side: number): string => {
    const hw = side * side;
    const normed = l.groupNorm(h, `${q}.norm`, cfg.groups, ch, side, side);
    const rows = b.op("Transpose", [b.op("Reshape", [normed, b.int64s([0, ch, hw])])], {
      perm: { ints: [0, 2, 1] },
    });
    const att = l.attention(
      l.linear(rows, `${q}.q.w`),
      l.linear(tokens, `${q}.k.w`),
      l.linear(tokens, `${q}.v.w`),
      bias,
      {
        heads: cfg.heads,
        c: ch,
        queries: hw,
        keys: L,
      },
    );
    const out = l.linear(att, `${q}.out.w`, `${q}.out.b`);
    const back = b.op("Reshape", [
      b.op("Transpose", [out], { perm: { ints: [0, 2, 1] } }),
      b.int64s([0, ch, side, side]),
    ]);
    return b.op("Add", [h, back]);
  };

  const levels = cfg.channelMult.length;
  const input = cond ? b.op("Concat", [x, cond], { axis: { i: 3 } }) : x;
  let h = l.conv(b.op("Transpose", [input], { perm: { ints: [0, 3, 1, 2] } }), "unet.conv_in");
  const skips: { h: string; ch: number }[] = [{ h, ch: cfg.baseChannels }];
  let ch = cfg.baseChannels;
  let side = S;
  for (let i = 0; i < levels; i++) {
    const out = cfg.baseChannels * cfg.channelMult[i];
    for (let j = 0; j < cfg.numResBlocks; j++) {
      h = res(`unet.down.${i}.res.${j}`, h, ch, out, side);
      ch = out;
      if (cfg.attentionResolutions.includes(side)) h = attn(`unet.down.${i}.attn.${j}`, h, ch, side);
      skips.push({ h, ch });
    }
    if (i < levels - 1) {
      h = l.conv(h, `unet.down.${i}.downsample`, 2);
      side /= 2;
      skips.push({ h, ch });
    }
  }
  h = res("unet.mid.res.0", h, ch, ch, side);
  if (cfg.midAttention) h = attn("unet.mid.attn", h, ch, side);
  h = res("unet.mid.res.1", h, ch, ch, side);
  for (let i = levels - 1; i >= 0; i--) {
    const out = cfg.baseChannels * cfg.channelMult[i];
    for (let j = 0; j <= cfg.numResBlocks; j++) {
      const skip = skips.pop();
      if (!skip) throw new Error("onnx unet: skip stack underflow");
      h = res(
        `unet.up.${i}.res.${j}`,
        b.op("Concat", [h, skip.h], { axis: { i: 1 } }),
        ch + skip.ch,
        out,
        side,
      );
      ch = out;
      if (cfg.attentionResolutions.includes(side)) h = attn(`unet.up.${i}.attn.${j}`, h, ch, side);
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
  const eps = l.conv(gnSilu("unet.norm_out", h, ch, side), "unet.conv_out");
  b.output(b.op("Transpose", [eps], { perm: { ints: [0, 2, 3, 1] } }), "eps", ["n", S, S, cfg.outChannels]);
  return encodeGraph(b);
}
