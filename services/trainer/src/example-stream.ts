import { type Image, type ImageBatch, shuffleStream, stackImages } from "@idpo/data";
import { Rng } from "@idpo/diffusion";
import type { PairSource } from "./pair-sources.js";

/**
 * What one training example is made of:
 * - "images": every image of every pair (winner and loser) with its prompt (PRETRAIN);
 * - "winners": the winner of every pair (SFT, SPIN's real images);
 * - "pairs": whole pairs (IMPROVER, DPO).
 */
export type ExampleUnit = "images" | "winners" | "pairs";

/** One example. `index` is its position in the unshuffled dataset (stable across epochs and restarts). */
export interface Example {
  index: number;
  prompt: string;
  /** The image ("images"/"winners") or the winner ("pairs"). */
  image: Image;
  /** The loser ("pairs" only). */
  loser?: Image;
}

/** A batch of examples, NHWC. */
export interface ExampleBatch {
  /** Dataset positions of the examples. */
  indices: number[];
  prompts: string[];
  /** Images, or winners for "pairs". */
  images: ImageBatch;
  /** Losers ("pairs" only). */
  losers?: ImageBatch;
}

/** Random streams of the data order live far above the training driver's per-step streams. */
const DATA_STREAM_BASE = 2 ** 40;

/** Options of {@link ExampleStream}. */
export interface ExampleStreamOptions {
  /** Seed of the data order (the job's seed). */
  seed: number;
  /** Most bytes of decoded examples held by the shuffle buffer (default 256 MiB). */
  shuffleBufferBytes?: number;
}

/**
 * The seeded, resumable order in which a job sees its data: epoch after epoch, each a pass over all
 * sources (in URI order) shuffled with a seeded reservoir buffer (an exact uniform shuffle when the whole
 * epoch fits the buffer). Example position p of the endless stream depends only on the data, the unit and
 * the seed, so a job restarted at step k reads exactly what the uninterrupted job would have read.
 */
export class ExampleStream {
  /** Examples per epoch. */
  readonly size: number;
  private readonly bufferSize: number;

  constructor(
    private readonly sources: readonly PairSource[],
    readonly unit: ExampleUnit,
    private readonly opts: ExampleStreamOptions,
  ) {
    if (sources.length === 0) throw new Error("ExampleStream: no data sources");
    let pairs = 0;
    for (const s of sources) pairs += s.count;
    this.size = unit === "images" ? 2 * pairs : pairs;
    const side = sources[0].size;
    const exampleBytes = side * side * 3 * 4 * (unit === "pairs" ? 2 : 1) + 256;
    const cap = Math.max(1, Math.floor((opts.shuffleBufferBytes ?? 256 * 1024 * 1024) / exampleBytes));
    this.bufferSize = Math.min(this.size, cap);
  }

  private async *epochUnshuffled(): AsyncGenerator<Example> {
    let pairIndex = 0;
    for (const source of this.sources) {
      let seen = 0;
      for await (const r of source.records()) {
        if (seen++ >= source.count) break;
        if (this.unit === "pairs") {
          yield { index: pairIndex, prompt: r.prompt, image: r.winner, loser: r.loser };
        } else if (this.unit === "winners") {
          yield { index: pairIndex, prompt: r.prompt, image: r.winner };
        } else {
          yield { index: 2 * pairIndex, prompt: r.prompt, image: r.winner };
          yield { index: 2 * pairIndex + 1, prompt: r.prompt, image: r.loser };
        }
        pairIndex++;
      }
      if (seen < source.count) {
        throw new Error(
          `${source.uri}: yielded ${seen} pairs, expected ${source.count} (data changed while training?)`,
        );
      }
    }
  }

  /** The examples of epoch `e`, in order. */
  epoch(e: number): AsyncGenerator<Example> {
    const rng = new Rng(this.opts.seed, DATA_STREAM_BASE + e);
    return shuffleStream(this.epochUnshuffled(), this.bufferSize, () => rng.next());
  }

  /** The endless stream from example position `position` (0 = the first example of epoch 0). */
  async *from(position: number): AsyncGenerator<Example> {
    if (!Number.isSafeInteger(position) || position < 0)
      throw new Error(`ExampleStream: bad position ${position}`);
    let e = Math.floor(position / this.size);
    let skip = position - e * this.size;
    for (;;) {
      for await (const ex of this.epoch(e)) {
        if (skip > 0) {
          skip--;
          continue;
        }
        yield ex;
      }
      e++;
    }
  }
}

/** Stacks examples into one batch. */
export function stackExamples(examples: readonly Example[], unit: ExampleUnit): ExampleBatch {
  if (examples.length === 0) throw new Error("stackExamples: no examples");
  const batch: ExampleBatch = {
    indices: examples.map((e) => e.index),
    prompts: examples.map((e) => e.prompt),
    images: stackImages(examples.map((e) => e.image)),
  };
  if (unit === "pairs") {
    batch.losers = stackImages(
      examples.map((e, i) => {
        if (!e.loser) throw new Error(`stackExamples: example ${i} has no loser`);
        return e.loser;
      }),
    );
  }
  return batch;
}

/** Pulls `n` examples from an endless iterator. */
export async function takeExamples(it: AsyncIterator<Example>, n: number): Promise<Example[]> {
  const out: Example[] = [];
  while (out.length < n) {
    const r = await it.next();
    if (r.done) throw new Error("example stream ended unexpectedly");
    out.push(r.value);
  }
  return out;
}
