import { assertImage, assertImageBatch, type Image, type ImageBatch } from "@idpo/data";

/**
 * Eigenvalues of a real symmetric n×n matrix (row-major), by the cyclic Jacobi method with
 * thresholded sweeps (Rutishauser). O(n³) per sweep and a handful of sweeps: meant for n up to a
 * few hundred. Returns them in ascending order; the input is not modified. Throws when the matrix
 * is not symmetric (beyond 1e-9 relative) or the sweeps do not converge.
 */
export function symmetricEigenvalues(matrix: ArrayLike<number>, n: number): Float64Array {
  if (!Number.isInteger(n) || n < 0)
    throw new Error(`symmetricEigenvalues: n must be a non-negative integer, got ${n}`);
  if (matrix.length !== n * n)
    throw new Error(`symmetricEigenvalues: matrix has ${matrix.length} values, expected ${n * n}`);
  const a = Float64Array.from(matrix);
  let scale = 0;
  for (let k = 0; k < a.length; k++) {
    if (!Number.isFinite(a[k])) throw new Error(`symmetricEigenvalues: entry ${k} is ${a[k]}`);
    scale = Math.max(scale, Math.abs(a[k]));
  }
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      if (Math.abs(a[i * n + j] - a[j * n + i]) > 1e-9 * Math.max(1, scale)) {
        throw new Error(`symmetricEigenvalues: matrix is not symmetric at (${i}, ${j})`);
      }
    }
  }
  const d = new Float64Array(n);
  const b = new Float64Array(n);
  const z = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    d[i] = a[i * n + i];
    b[i] = d[i];
  }
  for (let sweep = 0; sweep < 100; sweep++) {
    let off = 0;
    for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) off += Math.abs(a[i * n + j]);
    if (off === 0 || off <= 1e-15 * scale * n) return d.sort();
    const thresh = sweep < 3 ? (0.2 * off) / (n * n) : 0;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p * n + q];
        const g = 100 * Math.abs(apq);
        // After a few sweeps an element negligible against both diagonal entries is zeroed outright.
        if (sweep > 3 && Math.abs(d[p]) + g === Math.abs(d[p]) && Math.abs(d[q]) + g === Math.abs(d[q])) {
          a[p * n + q] = 0;
          a[q * n + p] = 0;
          continue;
        }
        if (Math.abs(apq) <= thresh) continue;
        const h = d[q] - d[p];
        let t: number;
        if (Math.abs(h) + g === Math.abs(h)) t = apq / h;
        else {
          const theta = (0.5 * h) / apq;
          t = 1 / (Math.abs(theta) + Math.sqrt(1 + theta * theta));
          if (theta < 0) t = -t;
        }
        const c = 1 / Math.sqrt(1 + t * t);
        const s = t * c;
        const tau = s / (1 + c);
        const hh = t * apq;
        z[p] -= hh;
        z[q] += hh;
        d[p] -= hh;
        d[q] += hh;
        a[p * n + q] = 0;
        a[q * n + p] = 0;
        for (let j = 0; j < n; j++) {
          if (j === p || j === q) continue;
          const ajp = a[j * n + p];
          const ajq = a[j * n + q];
          const np = ajp - s * (ajq + ajp * tau);
          const nq = ajq + s * (ajp - ajq * tau);
          a[j * n + p] = np;
          a[p * n + j] = np;
          a[j * n + q] = nq;
          a[q * n + j] = nq;
        }
      }
    }
    for (let i = 0; i < n; i++) {
      b[i] += z[i];
      d[i] = b[i];
      z[i] = 0;
    }
  }
  throw new Error(`symmetricEigenvalues: Jacobi sweeps did not converge for n = ${n}`);
}

/**
 * Vendi score of a set of images (docs/architecture.md): e_i = flatten(x_i − 0.5) normalised to unit L2 norm
 * (an image that is exactly 0.5 everywhere stays the zero vector), K = E Eᵀ, λ the eigenvalues of
 * K/n with negatives clipped to 0, VS = exp(−Σ λ log λ) (0 log 0 = 0). Ranges from 1 (all images
 * the same up to brightness scale) to n (mutually orthogonal). Images must share one size.
 */
export function vendiScore(images: readonly Image[] | ImageBatch): number {
  const { n, dim, get } = asVectors(images);
  if (n === 0) throw new Error("vendiScore: no images");
  const vecs: Float64Array[] = [];
  for (let i = 0; i < n; i++) {
    const x = get(i);
    const e = new Float64Array(dim);
    let norm = 0;
    for (let k = 0; k < dim; k++) {
      const v = x[k] - 0.5;
      e[k] = v;
      norm += v * v;
    }
    if (norm > 0) {
      const inv = 1 / Math.sqrt(norm);
      for (let k = 0; k < dim; k++) e[k] *= inv;
    }
    vecs.push(e);
  }
  const k = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const ei = vecs[i];
    for (let j = i; j < n; j++) {
      const ej = vecs[j];
      let s = 0;
      for (let t = 0; t < dim; t++) s += ei[t] * ej[t];
      k[i * n + j] = s / n;
      k[j * n + i] = s / n;
    }
  }
  return vendiFromEigenvalues(symmetricEigenvalues(k, n));
}

/** exp(−Σ λ log λ) over eigenvalues, negatives clipped to 0 and 0 log 0 = 0. */
export function vendiFromEigenvalues(lambdas: ArrayLike<number>): number {
  let h = 0;
  for (let i = 0; i < lambdas.length; i++) {
    const l = lambdas[i];
    if (l > 0) h -= l * Math.log(l);
  }
  return Math.exp(h);
}

function asVectors(images: readonly Image[] | ImageBatch): {
  n: number;
  dim: number;
  get: (i: number) => Float32Array;
} {
  if (Array.isArray(images)) {
    const list = images as readonly Image[];
    if (list.length === 0) return { n: 0, dim: 0, get: () => new Float32Array(0) };
    const { height, width } = list[0];
    list.forEach((img, i) => {
      assertImage(img, `vendiScore: image ${i}`);
      if (img.height !== height || img.width !== width) {
        throw new Error(
          `vendiScore: image ${i} is ${img.height}x${img.width}, image 0 is ${height}x${width}`,
        );
      }
    });
    return { n: list.length, dim: height * width * 3, get: (i) => list[i].data };
  }
  const batch = images as ImageBatch;
  assertImageBatch(batch, "vendiScore");
  const dim = batch.height * batch.width * 3;
  return { n: batch.n, dim, get: (i) => batch.data.subarray(i * dim, (i + 1) * dim) };
}
