import { invalidField } from "./contract-error.js";

/**
 * A contiguous run of a source's pairs in stored order: `take` pairs from pair `skip` (taken modulo the
 * source's size), wrapping from its last pair to its first. Written as the URI's fragment `#skip=S&take=N`.
 */
export interface PairWindow {
  /** First pair read (0-based; modulo the source's pair count). */
  skip: number;
  /** Pairs read (at most the source's pair count). */
  take: number;
}

/** A parsed training-data URI (JobSpec.data, RunConfig.dataset); `window`, when set, reads only part of it. */
export type DataUri = (
  | {
      kind: "file";
      /** The URI as given. */
      uri: string;
      /** Absolute directory of a pair dataset (manifest.json + shards), without a trailing slash. */
      dir: string;
    }
  | {
      kind: "artifact";
      uri: string;
      /** Artifact-name prefix; every `*.pairs` shard under it is read, in name order. */
      prefix: string;
    }
  | {
      kind: "shapes";
      uri: string;
      /** Pairs to generate. */
      pairs: number;
      /** Image side. */
      size: number;
      /** Generation seed (0 when the URI has none). */
      seed: number;
    }
) & { window?: PairWindow };

/** Largest shapes dataset generated on the fly. */
export const MAX_SHAPES_PAIRS = 1_000_000;
/** Image sides accepted for shapes datasets. */
export const SHAPES_SIZE_RANGE = [8, 256] as const;
/** Largest shapes generation seed (a uint32). */
const MAX_SHAPES_SEED = 2 ** 32 - 1;

const ARTIFACT_PREFIX = /^[A-Za-z0-9._@/=:-]*$/;

function intParam(
  params: URLSearchParams,
  name: string,
  min: number,
  max: number,
  field: string,
  what = "shapes URI",
): number {
  const v = params.get(name);
  if (v === null) throw invalidField(field, `${what} needs ${name}=<integer in [${min}, ${max}]>`);
  if (!/^\d+$/.test(v))
    throw invalidField(field, `${name}=${JSON.stringify(v)} is not a non-negative integer`);
  const n = Number(v);
  if (n < min || n > max) throw invalidField(field, `${name}=${v} is outside [${min}, ${max}]`);
  return n;
}

function parseFileUri(uri: string, field: string): DataUri {
  let url: URL;
  let dir: string;
  try {
    url = new URL(uri);
    dir = decodeURIComponent(url.pathname);
  } catch {
    throw invalidField(field, `${JSON.stringify(uri)} is not a valid file URI`);
  }
  if (url.host !== "") {
    throw invalidField(
      field,
      `file URI must have an empty host (file:///abs/dir), got ${JSON.stringify(uri)}`,
    );
  }
  if (!dir.startsWith("/") || dir === "/")
    throw invalidField(field, "file URI must name an absolute directory");
  return { kind: "file", uri, dir: dir.replace(/\/+$/, "") };
}

function parseArtifactUri(uri: string, field: string): DataUri {
  const prefix = uri.slice("artifact://".length);
  if (prefix.length === 0)
    throw invalidField(field, "artifact URI needs a prefix (artifact://runs/<run>/iter-<k>/)");
  if (!ARTIFACT_PREFIX.test(prefix) || prefix.includes("..")) {
    throw invalidField(
      field,
      `artifact prefix ${JSON.stringify(prefix)} has characters outside [A-Za-z0-9._@/=:-]`,
    );
  }
  return { kind: "artifact", uri, prefix };
}

function parseShapesUri(uri: string, field: string): DataUri {
  let params: URLSearchParams;
  try {
    const u = new URL(uri);
    if (u.host !== "" || (u.pathname !== "" && u.pathname !== "/")) throw new Error("path");
    params = u.searchParams;
  } catch {
    throw invalidField(field, `${JSON.stringify(uri)} is not of the form shapes://?pairs=N&size=S&seed=K`);
  }
  for (const key of params.keys()) {
    if (key !== "pairs" && key !== "size" && key !== "seed") {
      throw invalidField(field, `unknown shapes parameter ${JSON.stringify(key)} (known: pairs, size, seed)`);
    }
  }
  return {
    kind: "shapes",
    uri,
    pairs: intParam(params, "pairs", 1, MAX_SHAPES_PAIRS, field),
    size: intParam(params, "size", SHAPES_SIZE_RANGE[0], SHAPES_SIZE_RANGE[1], field),
    seed: params.has("seed") ? intParam(params, "seed", 0, MAX_SHAPES_SEED, field) : 0,
  };
}

/** Largest `skip` of a window (a uint32; it is taken modulo the source's size). */
const MAX_WINDOW_SKIP = 2 ** 32 - 1;

function parseWindow(fragment: string, field: string): PairWindow {
  const params = new URLSearchParams(fragment);
  for (const key of params.keys()) {
    if (key !== "skip" && key !== "take") {
      throw invalidField(field, `unknown window parameter ${JSON.stringify(key)} (known: skip, take)`);
    }
  }
  return {
    skip: params.has("skip") ? intParam(params, "skip", 0, MAX_WINDOW_SKIP, field, "window") : 0,
    take: intParam(params, "take", 1, MAX_SHAPES_PAIRS, field, "window"),
  };
}

/** `uri` with a window of `take` pairs from pair `skip` (the URI must have none yet). */
export function windowedDataUri(uri: string, window: PairWindow): string {
  if (uri.includes("#")) throw new Error(`windowedDataUri: ${uri} already has a fragment`);
  return `${uri}#skip=${window.skip}&take=${window.take}`;
}

/**
 * Parses one data URI: "file:///abs/dir", "artifact://<prefix>" or "shapes://?pairs=N&size=S&seed=K",
 * each optionally followed by a window of its pairs, "#skip=S&take=N" (see {@link PairWindow}).
 * Throws INVALID_ARGUMENT whose message starts with `field` (e.g. "spec.data[0]") and says what is wrong.
 */
export function parseDataUri(uri: string, field: string): DataUri {
  const hash = uri.indexOf("#");
  if (hash < 0) return parseSource(uri, field);
  const window = parseWindow(uri.slice(hash + 1), field);
  return { ...parseSource(uri.slice(0, hash), field), uri, window };
}

function parseSource(uri: string, field: string): DataUri {
  if (uri.length === 0) {
    throw invalidField(
      field,
      "required (file:///dir, artifact://<prefix> or shapes://?pairs=N&size=S&seed=K)",
    );
  }
  if (uri.startsWith("file://")) return parseFileUri(uri, field);
  if (uri.startsWith("artifact://")) return parseArtifactUri(uri, field);
  if (uri.startsWith("shapes://")) return parseShapesUri(uri, field);
  throw invalidField(
    field,
    `unsupported data URI ${JSON.stringify(uri)} (expected file:///dir, artifact://<prefix> or shapes://?pairs=N&size=S&seed=K)`,
  );
}
