import type { TextEncoderConfig } from "@idpo/diffusion";
import { GraphLayers, type Weights } from "./graph-layers.js";
import { type EncodedGraph, encodeGraph, OnnxGraphBuilder } from "./onnx-graph.js";

/**
 * The text encoder as an ONNX graph. Inputs: `ids` int64 `[n, L]` (token ids), `bias` float32
 * `[n, 1, 1, L]` (the additive key mask, keyBiasValues). Output: `tokens` `[n, L, dim]`.
 * Mirrors encodeTokens in libs/diffusion (the one-hot product there is a Gather here: same values).
 */
export function buildTextEncoderGraph(cfg: TextEncoderConfig, weights: Weights): EncodedGraph {
  const b = new OnnxGraphBuilder("idpo_text_encoder");
  const l = new GraphLayers(b, weights);
  const L = cfg.maxLength;
  const d = cfg.dim;
  const ids = b.input("ids", ["n", L], "int64");
  const bias = b.input("bias", ["n", 1, 1, L]);
  let x = b.op("Add", [
    b.op("Gather", [l.param("text.tok_emb"), ids], { axis: { i: 0 } }),
    l.param("text.pos_emb"),
  ]);
  for (let i = 0; i < cfg.layers; i++) {
    const q = `text.blocks.${i}`;
    const h = l.layerNorm(x, `${q}.ln1`);
    const qkv = l.linear(h, `${q}.qkv.w`, `${q}.qkv.b`);
    const [qq, kk, vv] = b.opN("Split", [qkv], 3, { axis: { i: -1 } });
    const att = l.attention(qq, kk, vv, bias, { heads: cfg.heads, c: d, queries: L, keys: L });
    x = b.op("Add", [x, l.linear(att, `${q}.proj.w`, `${q}.proj.b`)]);
    const h2 = l.layerNorm(x, `${q}.ln2`);
    x = b.op("Add", [
      x,
      l.linear(l.gelu(l.linear(h2, `${q}.fc1.w`, `${q}.fc1.b`)), `${q}.fc2.w`, `${q}.fc2.b`),
    ]);
  }
  b.output(l.layerNorm(x, "text.ln_f"), "tokens", ["n", L, d]);
  return encodeGraph(b);
}
