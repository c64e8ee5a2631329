/**
 * Seeded pseudo-random numbers for everything stochastic in the library (weight init, noise,
 * timesteps, data order). sfc32 (128-bit state) seeded through splitmix32, so that the same seed
 * gives the same stream on every platform and backend: sampling noise is drawn here, not by the
 * tensor backend, which is what makes "a seed fixes the output" hold across batch compositions.
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;
  private spare = 0;
  private hasSpare = false;

  /**
   * @param seed a non-negative safe integer (up to 2^53 − 1); both 32-bit halves feed the state.
   * @param stream optional extra integer mixed into the state, for independent sub-streams.
   */
  constructor(seed: number, stream = 0) {
    assertSeed(seed, "Rng seed");
    assertSeed(stream, "Rng stream");
    const lo = seed >>> 0;
    const hi = Math.floor(seed / 4294967296) >>> 0;
    let s = splitmix32(lo ^ 0x9e3779b9);
    s = splitmix32(s ^ hi);
    s = splitmix32(s ^ (stream >>> 0));
    s = splitmix32(s ^ Math.floor(stream / 4294967296));
    this.a = s;
    this.b = splitmix32(s + 1);
    this.c = splitmix32(s + 2);
    this.d = splitmix32(s + 3);
    // Discard the first outputs: sfc32 mixes poorly for a few rounds after seeding.
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** Uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1) with 32 bits of resolution. */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    if (!Number.isInteger(n) || n <= 0) throw new Error(`Rng.int: n must be a positive integer, got ${n}`);
    return Math.floor(this.next() * n);
  }

  /** Standard normal N(0, 1) by Box-Muller; the second value of each pair is kept for the next call. */
  normal(): number {
    if (this.hasSpare) {
      this.hasSpare = false;
      return this.spare;
    }
    let u = this.next();
    while (u <= 0) u = this.next();
    const v = this.next();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    this.hasSpare = true;
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Fills `out` (or a new array of `count`) with standard normals. */
  normals(count: number, out?: Float32Array, offset = 0): Float32Array {
    const dst = out ?? new Float32Array(count);
    for (let i = 0; i < count; i++) dst[offset + i] = this.normal();
    return dst;
  }

  /** A uniformly random permutation of 0..n-1 (Fisher-Yates). */
  permutation(n: number): Int32Array {
    const p = new Int32Array(n);
    for (let i = 0; i < n; i++) p[i] = i;
    for (let i = n - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = p[i];
      p[i] = p[j];
      p[j] = tmp;
    }
    return p;
  }
}

/** Throws unless `seed` is a non-negative safe integer. */
export function assertSeed(seed: number, what = "seed"): void {
  if (!Number.isSafeInteger(seed) || seed < 0) {
    throw new Error(`${what} must be a non-negative safe integer, got ${seed}`);
  }
}

function splitmix32(x: number): number {
  let z = (x + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}
