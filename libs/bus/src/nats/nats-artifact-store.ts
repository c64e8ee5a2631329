import { createHash } from "node:crypto";
import type { JetStreamManager } from "@nats-io/jetstream";
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

/**
 * Artifacts in a NATS object store (chunked, SHA-256 verified on read).
 *
 * Reads fetch the chunks one by one with JetStream direct gets (the object store's stream allows them)
 * instead of the client's `get`, which opens an ordered push consumer per read that the server keeps for
 * minutes after the read ends and re-creates on every reconnect: a busy mesh piled up thousands.
 */
export class NatsArtifactStore implements ArtifactStore {
  /** The object store's stream, `OBJ_<bucket>`. */
  private readonly stream: string;

  constructor(
    private readonly os: ObjectStore,
    private readonly jsm: JetStreamManager,
    bucket: string,
  ) {
    this.stream = `OBJ_${bucket}`;
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
    const chunks = await this.getStream(name);
    if (!chunks) return undefined;
    const parts: Uint8Array[] = [];
    for await (const c of chunks) parts.push(c);
    return parts.length === 1 ? parts[0] : new Uint8Array(Buffer.concat(parts));
  }

  async getStream(name: string): Promise<AsyncIterable<Uint8Array> | undefined> {
    checkArtifactName(name);
    const o = await this.os.info(name);
    if (!o || o.deleted) return undefined;
    if (o.options?.link) throw new Error(`artifact "${name}" is a link, which the bus never writes`);
    return this.chunks(o);
  }

  /** The chunks of `o` in order, read by direct get (`next_by_subj` from the last sequence read). */
  private async *chunks(o: ObjectInfo): AsyncGenerator<Uint8Array> {
    const subject = `$O.${o.bucket}.C.${o.nuid}`;
    const sha = createHash("sha256");
    let seq = 0;
    let size = 0;
    for (let i = 0; i < o.chunks; i++) {
      const m = await this.jsm.direct.getMessage(this.stream, { next_by_subj: subject, seq: seq + 1 });
      if (!m) throw new Error(`artifact "${o.name}" is corrupt: chunk ${i + 1} of ${o.chunks} is missing`);
      seq = m.seq;
      size += m.data.length;
      sha.update(m.data);
      yield m.data;
    }
    const digest = sha.digest("hex");
    if (size !== o.size || digest !== hexDigest(o.digest)) {
      throw new Error(
        `artifact "${o.name}" is corrupt: read ${size} bytes with SHA-256 ${digest}, stored ${o.size} bytes with ${hexDigest(o.digest)}`,
      );
    }
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
