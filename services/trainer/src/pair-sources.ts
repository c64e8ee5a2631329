import { randomUUID } from "node:crypto";
import { rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { ArtifactStore } from "@idpo/bus";
import { type PairRecord, readPairManifest, readPairs, writeShapesPairs } from "@idpo/data";
import { type DataUri, decodePairShard, type PairWindow } from "@idpo/mesh";
import { oracleRewardValue } from "@idpo/metrics";
import { retryTransient } from "@idpo/runtime";

/** One readable collection of preference pairs (a dataset directory, a set of online shards, ...). */
export interface PairSource {
  /** The URI it was opened from. */
  uri: string;
  /** Pairs in the source. */
  count: number;
  /** Image side (every image is size × size). */
  size: number;
  /** Streams the pairs in stored order (a fresh pass on every call). */
  records(): AsyncIterable<PairRecord>;
}

/** Why a data URI cannot be used; `field` names it (e.g. "spec.data[1]"); `missing` when nothing is there. */
export class DataSourceError extends Error {
  constructor(
    readonly field: string,
    message: string,
    readonly missing = false,
  ) {
    super(`${field}: ${message}`);
    this.name = "DataSourceError";
  }
}

/** The artifacts of an `artifact://<prefix>` URI: every `*.pairs` object under the prefix, by name. */
export async function listPairShards(artifacts: ArtifactStore, prefix: string): Promise<string[]> {
  const infos = await artifacts.list(prefix);
  return infos.map((i) => i.name).filter((n) => n.endsWith(".pairs"));
}

/**
 * Cheap reachability check for StartJob: a file dataset's manifest is readable, an artifact prefix
 * holds at least one shard. Shapes URIs are always reachable (generated on demand). A window is checked
 * against the pair count where that is known without reading pairs (file and shapes URIs).
 */
export async function checkReachable(uri: DataUri, field: string, artifacts: ArtifactStore): Promise<void> {
  if (uri.kind === "file") {
    if (!(await exists(join(uri.dir, "manifest.json")))) {
      throw new DataSourceError(field, `no pair dataset at ${uri.dir} (manifest.json is missing)`, true);
    }
    let count: number;
    try {
      count = (await readPairManifest(uri.dir)).count;
    } catch (e) {
      throw new DataSourceError(field, (e as Error).message);
    }
    checkWindow(uri.window, count, field);
  } else if (uri.kind === "shapes") {
    checkWindow(uri.window, uri.pairs, field);
  } else if (uri.kind === "artifact") {
    const shards = await listPairShards(artifacts, uri.prefix);
    if (shards.length === 0) {
      throw new DataSourceError(field, `no *.pairs shards under artifact prefix ${uri.prefix}`, true);
    }
  }
}

/** Directory under `dataDir` where the shapes dataset of `uri` is cached. */
export function shapesCacheDir(dataDir: string, uri: { pairs: number; size: number; seed: number }): string {
  return join(dataDir, "datasets", `shapes-train-n${uri.pairs}-s${uri.size}-seed${uri.seed}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The shapes world's offline dataset for (pairs, size, seed) on the training prompts, generated once
 * (deterministically) into the cache and reused. Generation writes to a temporary directory that is
 * renamed into place, so a crash never leaves a half-written dataset behind.
 */
export async function ensureShapesDataset(
  dataDir: string,
  uri: { pairs: number; size: number; seed: number },
): Promise<string> {
  const dir = shapesCacheDir(dataDir, uri);
  if (await exists(join(dir, "manifest.json"))) return dir;
  const tmp = `${dir}.tmp-${randomUUID()}`;
  try {
    await writeShapesPairs(tmp, {
      count: uri.pairs,
      size: uri.size,
      seed: uri.seed,
      reward: oracleRewardValue,
      split: "train",
    });
    if (await exists(join(dir, "manifest.json"))) return dir;
    await rm(dir, { recursive: true, force: true });
    await rename(tmp, dir);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  return dir;
}

async function fileSource(uri: string, dir: string, field: string): Promise<PairSource> {
  let manifest: Awaited<ReturnType<typeof readPairManifest>>;
  try {
    manifest = await readPairManifest(dir);
  } catch (e) {
    throw new DataSourceError(field, (e as Error).message);
  }
  if (manifest.height !== manifest.width) {
    throw new DataSourceError(
      field,
      `images are ${manifest.height}x${manifest.width}; the models need square images`,
    );
  }
  if (manifest.count < 1) throw new DataSourceError(field, `${dir} holds no pairs`);
  return { uri, count: manifest.count, size: manifest.height, records: () => readPairs(dir) };
}

/**
 * Bytes of pair shards a job keeps in memory after its first read (encoded, so about 3 KB per 16 px pair).
 * A job reads its data once per epoch; from memory, an epoch needs no bus, so a NATS restart mid-job does not
 * stall or fail training. Shards past the budget are read again each epoch, retried while the bus is away.
 */
const SHARD_CACHE_BYTES = 256 * 1024 * 1024;

/** How long a shard read past the cache waits for an unreachable bus before the job fails: 10 min. */
const SHARD_READ_WAIT_MS = 600_000;

async function artifactSource(
  uri: string,
  prefix: string,
  field: string,
  artifacts: ArtifactStore,
): Promise<PairSource> {
  const names = await listPairShards(artifacts, prefix);
  if (names.length === 0)
    throw new DataSourceError(field, `no *.pairs shards under artifact prefix ${prefix}`);
  let count = 0;
  let size = 0;
  let cachedBytes = 0;
  const cache = new Map<string, Uint8Array>();
  // Every shard is decoded once up front: a corrupt shard fails the job before training starts.
  for (const name of names) {
    const bytes = await readShard(artifacts, name, field);
    const shard = decodeShard(bytes, name, field);
    if (cachedBytes + bytes.length <= SHARD_CACHE_BYTES) {
      cache.set(name, bytes);
      cachedBytes += bytes.length;
    }
    if (shard.height !== shard.width) {
      throw new DataSourceError(
        field,
        `shard ${name} holds ${shard.height}x${shard.width} images; need square images`,
      );
    }
    if (size !== 0 && shard.height !== size) {
      throw new DataSourceError(
        field,
        `shard ${name} holds ${shard.height}px images, earlier shards ${size}px`,
      );
    }
    size = shard.height;
    count += shard.records.length;
  }
  if (count < 1) throw new DataSourceError(field, `the shards under ${prefix} hold no pairs`);
  return {
    uri,
    count,
    size,
    records: async function* () {
      for (const name of names) {
        const bytes =
          cache.get(name) ??
          (await retryTransient(() => readShard(artifacts, name, field), {
            budgetMs: SHARD_READ_WAIT_MS,
            retryable: (err) => !(err instanceof DataSourceError),
          }));
        yield* decodeShard(bytes, name, field).records;
      }
    },
  };
}

async function readShard(artifacts: ArtifactStore, name: string, field: string): Promise<Uint8Array> {
  const bytes = await artifacts.get(name);
  if (!bytes) throw new DataSourceError(field, `shard ${name} disappeared from the artifact store`);
  return bytes;
}

function decodeShard(bytes: Uint8Array, name: string, field: string) {
  try {
    return decodePairShard(bytes);
  } catch (e) {
    throw new DataSourceError(field, `shard ${name}: ${(e as Error).message}`);
  }
}

function checkWindow(window: PairWindow | undefined, count: number, field: string): void {
  if (window && window.take > count) {
    throw new DataSourceError(field, `the window takes ${window.take} pairs but the source holds ${count}`);
  }
}

/**
 * The pairs of `source` inside `window`: `take` pairs from pair `skip mod count`, wrapping past the last
 * pair to the first.
 */
function windowedSource(source: PairSource, window: PairWindow, uri: string, field: string): PairSource {
  const n = source.count;
  checkWindow(window, n, field);
  const start = window.skip % n;
  return {
    uri,
    count: window.take,
    size: source.size,
    records: async function* () {
      let emitted = 0;
      // First pass: from `start` to the end; second (only when the window wraps): from the start.
      for (const [from, to] of [
        [start, Math.min(n, start + window.take)],
        [0, Math.max(0, start + window.take - n)],
      ]) {
        if (from >= to) continue;
        let i = 0;
        for await (const r of source.records()) {
          if (i >= to) break;
          if (i++ >= from) {
            yield r;
            emitted++;
          }
        }
      }
      if (emitted !== window.take) {
        throw new DataSourceError(
          field,
          `the source yielded ${emitted} of the window's ${window.take} pairs`,
        );
      }
    },
  };
}

/** Opens every data URI of a job (generating shapes datasets into `dataDir` as needed). */
export async function openPairSources(
  uris: readonly DataUri[],
  deps: { artifacts: ArtifactStore; dataDir: string },
): Promise<PairSource[]> {
  const out: PairSource[] = [];
  for (let i = 0; i < uris.length; i++) {
    const uri = uris[i];
    const field = `spec.data[${i}]`;
    let source: PairSource;
    if (uri.kind === "file") source = await fileSource(uri.uri, uri.dir, field);
    else if (uri.kind === "artifact")
      source = await artifactSource(uri.uri, uri.prefix, field, deps.artifacts);
    else source = await fileSource(uri.uri, await ensureShapesDataset(deps.dataDir, uri), field);
    out.push(uri.window ? windowedSource(source, uri.window, uri.uri, field) : source);
  }
  const size = out[0].size;
  for (let i = 1; i < out.length; i++) {
    if (out[i].size !== size) {
      throw new DataSourceError(
        `spec.data[${i}]`,
        `images are ${out[i].size}px but spec.data[0] has ${size}px images`,
      );
    }
  }
  return out;
}
