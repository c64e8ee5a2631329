import { isAbsolute } from "node:path";

/** A parsed training-data URI (JobSpec.data). */
export type DataUri =
  | {
      kind: "file";
      /** The URI as given. */
      uri: string;
      /** Absolute directory of a pair dataset (manifest.json + shards). */
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
      /** Generation seed. */
      seed: number;
    };

/** Largest shapes dataset generated on the fly. */
export const MAX_SHAPES_PAIRS = 1_000_000;
/** Image sides accepted for shapes datasets. */
export const SHAPES_SIZE_RANGE = [8, 256] as const;

const ARTIFACT_PREFIX = /^[A-Za-z0-9._@/=:-]*$/;

function intParam(params: URLSearchParams, name: string, min: number, max: number, where: string): number {
  const v = params.get(name);
  if (v === null) throw new Error(`${where}: shapes URI needs ${name}=<integer in [${min}, ${max}]>`);
  if (!/^\d+$/.test(v))
    throw new Error(`${where}: ${name}=${JSON.stringify(v)} is not a non-negative integer`);
  const n = Number(v);
  if (n < min || n > max) throw new Error(`${where}: ${name}=${v} is outside [${min}, ${max}]`);
  return n;
}

/**
 * Parses one data URI: "file:///abs/dir", "artifact://<prefix>" or "shapes://?pairs=N&size=S&seed=K".
 * Throws an Error whose message starts with `where` (e.g. "spec.data[0]") and says what is wrong.
 */
export function parseDataUri(uri: string, where: string): DataUri {
  if (typeof uri !== "string" || uri.length === 0) throw new Error(`${where}: empty data URI`);
  if (uri.startsWith("file://")) {
    let dir: string;
    try {
      dir = decodeURIComponent(new URL(uri).pathname);
    } catch {
      throw new Error(`${where}: ${JSON.stringify(uri)} is not a valid file URI`);
    }
    if (new URL(uri).host !== "") {
      throw new Error(
        `${where}: file URI must have an empty host (file:///abs/dir), got ${JSON.stringify(uri)}`,
      );
    }
    if (!isAbsolute(dir) || dir === "/")
      throw new Error(`${where}: file URI must name an absolute directory`);
    return { kind: "file", uri, dir: dir.replace(/\/+$/, "") };
  }
  if (uri.startsWith("artifact://")) {
    const prefix = uri.slice("artifact://".length);
    if (prefix.length === 0)
      throw new Error(`${where}: artifact URI needs a prefix (artifact://runs/<run>/iter-<k>/)`);
    if (!ARTIFACT_PREFIX.test(prefix) || prefix.includes("..")) {
      throw new Error(
        `${where}: artifact prefix ${JSON.stringify(prefix)} has characters outside [A-Za-z0-9._@/=:-]`,
      );
    }
    return { kind: "artifact", uri, prefix };
  }
  if (uri.startsWith("shapes://")) {
    let params: URLSearchParams;
    try {
      const u = new URL(uri);
      if (u.host !== "" || (u.pathname !== "" && u.pathname !== "/")) throw new Error("path");
      params = u.searchParams;
    } catch {
      throw new Error(`${where}: ${JSON.stringify(uri)} is not of the form shapes://?pairs=N&size=S&seed=K`);
    }
    for (const key of params.keys()) {
      if (key !== "pairs" && key !== "size" && key !== "seed") {
        throw new Error(
          `${where}: unknown shapes parameter ${JSON.stringify(key)} (known: pairs, size, seed)`,
        );
      }
    }
    return {
      kind: "shapes",
      uri,
      pairs: intParam(params, "pairs", 1, MAX_SHAPES_PAIRS, where),
      size: intParam(params, "size", SHAPES_SIZE_RANGE[0], SHAPES_SIZE_RANGE[1], where),
      seed: params.has("seed") ? intParam(params, "seed", 0, 2 ** 32 - 1, where) : 0,
    };
  }
  throw new Error(
    `${where}: unsupported data URI ${JSON.stringify(uri)} (expected file:///dir, artifact://<prefix> or shapes://?pairs=N&size=S&seed=K)`,
  );
}
