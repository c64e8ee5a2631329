import { type ObjectInfo, type ObjectStore, setSha256Backend } from "@nats-io/obj";
import { checkArtifactName } from "../checks.js";
import type { ArtifactInfo, ArtifactStore, PutOptions } from "../types.js";

/** NATS object-store digests are "SHA-256=<base64url>"; the bus reports lowercase hex. */
function hexDigest(natsDigest: string): string {
  const i = natsDigest.indexOf("=");
  const b64 = i >= 0 ? natsDigest.slice(i + 1) : natsDigest;
  return Buffer.from(b64, "base64url").toString("hex");
}

function toInfo(o: ObjectInfo): ArtifactInfo {
  return {
    name: o.name,
    size: o.size,
    digest: hexDigest(o.digest),
    meta: { ...(o.metadata ?? {}) },
    mtime: new Date(o.mtime),
  };
}

function checkMeta(meta: Record<string, string>): void {
  for (const [k, v] of Object.entries(meta)) {
    if (typeof v !== "string") throw new Error(`artifact meta "${k}" must be a string, got ${typeof v}`);
  }
}

/** A web ReadableStream over an async iterable of chunks (what the NATS object store consumes). */
function toReadable(chunks: AsyncIterable<Uint8Array>): ReadableStream<Uint8Array> {
  const it = chunks[Symbol.asyncIterator]();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { value, done } = await it.next();
      if (done) controller.close();
      else {
        if (!(value instanceof Uint8Array)) throw new Error("artifact chunks must be Uint8Array");
        controller.enqueue(value);
      }
    },
    async cancel() {
      await it.return?.();
    },
  });
}

/** Chunks are published one at a time, each awaiting its ack: big chunks (capped at the server's
 * max_payload by the client) keep a checkpoint put to a few dozen round trips. */
const CHUNK_BYTES = 1024 * 1024;

/** Artifacts in a NATS object store (chunked, SHA-256 verified on read). */
export class NatsArtifactStore implements ArtifactStore {
  constructor(private readonly os: ObjectStore) {
    // Node's native SHA-256 instead of the client's pure-JS default: checkpoints are tens of MB.
    setSha256Backend("native");
  }

  async put(
    name: string,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    opts: PutOptions = {},
  ): Promise<ArtifactInfo> {
    checkArtifactName(name);
    const meta = opts.meta ?? {};
    checkMeta(meta);
    const m = { name, metadata: { ...meta }, options: { max_chunk_size: CHUNK_BYTES } };
    const info =
      data instanceof Uint8Array ? await this.os.putBlob(m, data) : await this.os.put(m, toReadable(data));
    return toInfo(info);
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    checkArtifactName(name);
    const blob = await this.os.getBlob(name);
    return blob ?? undefined;
  }

  async getStream(name: string): Promise<AsyncIterable<Uint8Array> | undefined> {
    checkArtifactName(name);
    const r = await this.os.get(name);
    if (!r) return undefined;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const reader = r!.data.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        yield value;
      }
      const err = await r!.error;
      if (err) throw new Error(`artifact "${name}" is corrupt: ${err.message}`);
    }
    return chunks();
  }

  async info(name: string): Promise<ArtifactInfo | undefined> {
    checkArtifactName(name);
    const o = await this.os.info(name);
    return o && !o.deleted ? toInfo(o) : undefined;
  }

  async list(prefix = ""): Promise<ArtifactInfo[]> {
    const all = await this.os.list();
    return all
      .filter((o) => !o.deleted && o.name.startsWith(prefix))
      .map(toInfo)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<boolean> {
    checkArtifactName(name);
    const o = await this.os.info(name);
    if (!o || o.deleted) return false;
    await this.os.delete(name);
    return true;
  }
}
