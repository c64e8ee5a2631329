/**
 * The random numbers of data: the shapes world's renders and offline pairs, fixtures, and the prompt and
 * seed plans of a run's pair shards. A small seeded generator (mulberry32: 32-bit state, period 2^32) with
 * uniform, integer, normal (Box-Muller) and choice helpers; the same seed gives the same stream on every
 * platform, which is what makes a dataset reproducible from its seed. The models' randomness (weights,
 * noise, timesteps, data order) is @idpo/diffusion's `Rng` (sfc32, with sub-streams) instead: changing
 * either generator would change what existing seeds produce.
 */
export class DataRng {
  private state: number;
  private spare = 0;
  private hasSpare = false;

  /** @param seed any finite number; it is reduced to 32 bits. */
  constructor(seed: number) {
    if (!Number.isFinite(seed)) throw new Error(`DataRng: seed must be a finite number, got ${seed}`);
    this.state = hashSeed(seed);
  }

  /** Uniform in [0, 1), 32 bits of resolution. */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) | 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Uniform in [lo, hi). */
  uniform(lo = 0, hi = 1): number {
    return lo + (hi - lo) * this.next();
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0)
      throw new Error(`DataRng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Normal N(mean, std^2) by Box-Muller; the second value of each pair is kept for the next call. */
  normal(mean = 0, std = 1): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return mean + std * this.spare;
    }
    // 1 - next() lies in (0, 1], so the log is finite.
    const u1 = 1 - this.next();
    const u2 = this.next();
    const r = Math.sqrt(-2 * Math.log(u1));
    const theta = 2 * Math.PI * u2;
    this.spare = r * Math.sin(theta);
    this.hasSpare = true;
    return mean + std * r * Math.cos(theta);
  }

  /** One element of a non-empty array, uniformly. */
  choice<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("DataRng.choice: empty array");
    return items[this.int(items.length)];
  }

  /** Shuffles an array in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }

  /** A new generator seeded from this one's stream (independent sub-streams, e.g. one per worker). */
  fork(): DataRng {
    return new DataRng(Math.floor(this.next() * 4294967296));
  }
}

/** Mixes a seed (splitmix-style finaliser) so nearby seeds (0, 1, 2, ...) give unrelated streams. */
function hashSeed(seed: number): number {
  let h = (Math.floor(seed) ^ Math.floor(seed / 4294967296)) | 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h ^= h >>> 16;
  return h | 0;
}
