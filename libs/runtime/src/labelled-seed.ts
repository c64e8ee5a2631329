import { createHash } from "node:crypto";

/**
 * A 32-bit seed for one purpose, derived from a master seed: the first four bytes (little-endian) of
 * SHA-256("namespace:master:part1:part2…"). Every random choice of a run follows from its one master seed,
 * and no two purposes (labels) or users (namespaces) share a stream.
 */
export function labelledSeed(
  namespace: string,
  master: number | bigint,
  ...parts: readonly (string | number | bigint)[]
): number {
  const h = createHash("sha256").update(`${namespace}:${master}`);
  for (const p of parts) h.update(`:${p}`);
  return h.digest().readUInt32LE(0);
}
