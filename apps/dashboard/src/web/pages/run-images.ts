import type { EvaluationSample, ImagePair, Run } from "@idpo/proto";
import { controller } from "../api.js";
import { h, pngImage, replace } from "../dom.js";
import { sampleGrid } from "../shaping/sample-grid.js";

/** Pairs shown per iteration, and samples per model. */
const PAIRS_SHOWN = 12;
const SAMPLES_SHOWN = 24;

type PairCache = Map<number, { shardsDone: number; pairs: ImagePair[] }>;
type SampleCache = Map<number, EvaluationSample[]>;

function pngOf(
  img: { data: { case: string | undefined; value?: unknown } } | undefined,
): Uint8Array | undefined {
  return img?.data.case === "png" ? (img.data.value as Uint8Array) : undefined;
}

/**
 * The run page's image grids: the online pairs of each iteration into `pairs`, the same-seed evaluation
 * samples of each evaluated model into `samples`. The returned refresh fetches what is new (all at once)
 * and rebuilds the grids only when what they show changed.
 */
export function runImages(
  pairs: HTMLElement,
  samples: HTMLElement,
  signal: AbortSignal,
): (r: Run) => Promise<void> {
  const sampleCache: SampleCache = new Map();
  const pairCache: PairCache = new Map();
  let shownKey = "";
  return async (r: Run) => {
    await Promise.all([...fetchPairs(r, pairCache, signal), ...fetchSamples(r, sampleCache, signal)]);
    const key = JSON.stringify([
      [...pairCache.entries()].map(([k, v]) => [k, v.pairs.length]),
      [...sampleCache.keys()],
    ]);
    if (key === shownKey) return;
    shownKey = key;
    renderPairs(pairs, pairCache);
    renderSamples(samples, sampleCache);
  };
}

/** Pairs are re-read while an iteration is still storing shards and fewer than PAIRS_SHOWN are shown. */
function fetchPairs(r: Run, cache: PairCache, signal: AbortSignal): Promise<void>[] {
  return r.iterations
    .filter((it) => {
      const cached = cache.get(it.index);
      if (cached && (cached.shardsDone === it.shardsDone || cached.pairs.length >= PAIRS_SHOWN)) return false;
      return it.shardsDone > 0;
    })
    .map(async (it) => {
      const res = await controller.getIterationPairs(
        { runId: r.runId, iteration: it.index, maxPairs: PAIRS_SHOWN },
        { signal },
      );
      cache.set(it.index, { shardsDone: it.shardsDone, pairs: res.pairs });
    });
}

/** An evaluated model's samples never change: each is read once it has some. */
function fetchSamples(r: Run, cache: SampleCache, signal: AbortSignal): Promise<void>[] {
  const evaluated = [
    ...(r.baseEvaluation ? [0] : []),
    ...r.iterations.filter((it) => it.evaluation).map((it) => it.index),
  ];
  return evaluated
    .filter((k) => !cache.has(k))
    .map(async (k) => {
      const res = await controller.getEvaluationSamples(
        { runId: r.runId, iteration: k, maxSamples: SAMPLES_SHOWN },
        { signal },
      );
      if (res.samples.length > 0) cache.set(k, res.samples);
    });
}

/** One table per iteration: its losers in the top row, the improver's winners below. */
function renderPairs(el: HTMLElement, cache: PairCache): void {
  const row = (pairs: ImagePair[], side: "loser" | "winner") =>
    h(
      "tr",
      {},
      pairs.map((p) => h("td", {}, pngImage(pngOf(p[side]) ?? new Uint8Array(), `${side}: ${p.prompt}`))),
    );
  const blocks = [...cache.entries()]
    .sort((a, b) => a[0] - b[0])
    .filter(([, v]) => v.pairs.length > 0)
    .map(([k, v]) =>
      h(
        "div",
        { "data-iteration": k },
        h("h3", {}, `iteration ${k}`),
        h("table", {}, row(v.pairs, "loser"), row(v.pairs, "winner")),
      ),
    );
  replace(el, blocks.length === 0 ? h("p", { class: "muted" }, "no online pairs stored yet") : blocks);
}

/** A row of samples per evaluated model, the same prompt and seed in each column. */
function renderSamples(el: HTMLElement, cache: SampleCache): void {
  const grid = sampleGrid(
    [...cache.entries()]
      .sort((a, b) => a[0] - b[0])
      .map(([k, s]) => ({ label: k === 0 ? "base" : `iter ${k}`, samples: s })),
  );
  if (grid.rows.length === 0) {
    replace(el, h("p", { class: "muted" }, "no model evaluated yet"));
    return;
  }
  replace(
    el,
    h(
      "table",
      { id: "sample-grid" },
      grid.rows.map((row) =>
        h(
          "tr",
          { "data-model": row.label },
          h("th", { class: "row" }, row.label),
          row.cells.map((c) =>
            h(
              "td",
              {},
              c ? pngImage(pngOf(c.image) ?? new Uint8Array(), `${c.prompt} (seed ${c.seed})`) : "",
            ),
          ),
        ),
      ),
    ),
  );
}
