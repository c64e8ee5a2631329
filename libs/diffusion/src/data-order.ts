import { assertSeed, Rng } from "./rng.js";

/**
 * Seeded, resumable data order: an independent random permutation per epoch, read as one long
 * stream of indices. The indices of any step depend only on (n, seed, step, batch size), so a
 * restarted job continues exactly where it stopped.
 */
export class DataOrder {
  private cachedEpoch = -1;
  private cachedPerm: Int32Array = new Int32Array(0);

  constructor(
    readonly n: number,
    readonly seed: number,
  ) {
    if (!Number.isInteger(n) || n < 1) throw new Error(`DataOrder: n must be a positive integer, got ${n}`);
    assertSeed(seed, "DataOrder seed");
  }

  /** The permutation used in epoch `e`. */
  epoch(e: number): Int32Array {
    if (e !== this.cachedEpoch) {
      this.cachedPerm = new Rng(this.seed, e).permutation(this.n);
      this.cachedEpoch = e;
    }
    return this.cachedPerm;
  }

  /** Indices of the `batchSize` examples of step `step` (0-based). */
  batch(step: number, batchSize: number): number[] {
    if (!Number.isInteger(step) || step < 0)
      throw new Error(`DataOrder: step must be a non-negative integer, got ${step}`);
    if (!Number.isInteger(batchSize) || batchSize < 1)
      throw new Error(`DataOrder: bad batch size ${batchSize}`);
    const out: number[] = [];
    for (let j = 0; j < batchSize; j++) {
      const k = step * batchSize + j;
      out.push(this.epoch(Math.floor(k / this.n))[k % this.n]);
    }
    return out;
  }
}
