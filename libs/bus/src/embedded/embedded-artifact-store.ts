import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { join } from "node:path";
import { checkArtifactName } from "../checks.js";
import type { ArtifactInfo, ArtifactStore, PutOptions } from "../types.js";

interface MetaFile {
  name: string;
  size: number;
  digest: string;
  meta: Record<string, string>;
  mtime: string;
  /** Data file (in `data/`) holding the content. */
  file: string;
}

function sha256hex(s: string): string {
  return createHash("sha256").update(s).digest("hex");
}

function toInfo(m: MetaFile): ArtifactInfo {
  return { name: m.name, size: m.size, digest: m.digest, meta: { ...m.meta }, mtime: new Date(m.mtime) };
}

/**
 * Artifacts as files: `data/<file>` holds the content (written to a temporary file while hashing, then
 * renamed), `meta/<sha256(name)>.json` points at it. Replacing the meta file is the atomic commit of a
 * put; data files no meta file points at (a crash between the two renames) are removed at open.
 */
export class EmbeddedArtifactStore implements ArtifactStore {
  private readonly index = new Map<string, MetaFile>();
  private readonly dataDir: string;
  private readonly metaDir: string;
  private readonly tmpDir: string;

  constructor(dir: string) {
    this.dataDir = join(dir, "data");
    this.metaDir = join(dir, "meta");
    this.tmpDir = join(dir, "tmp");
    for (const d of [this.dataDir, this.metaDir, this.tmpDir]) mkdirSync(d, { recursive: true });
    rmSync(this.tmpDir, { recursive: true, force: true });
    mkdirSync(this.tmpDir);
    const used = new Set<string>();
    for (const f of readdirSync(this.metaDir)) {
      if (!f.endsWith(".json")) continue;
      const m = JSON.parse(readFileSync(join(this.metaDir, f), "utf8")) as MetaFile;
      if (!existsSync(join(this.dataDir, m.file))) {
        console.warn(`[bus] artifact "${m.name}" lost its data file; dropping it`);
        rmSync(join(this.metaDir, f));
        continue;
      }
      this.index.set(m.name, m);
      used.add(m.file);
    }
    for (const f of readdirSync(this.dataDir)) if (!used.has(f)) rmSync(join(this.dataDir, f));
  }

  async put(
    name: string,
    data: Uint8Array | AsyncIterable<Uint8Array>,
    opts: PutOptions = {},
  ): Promise<ArtifactInfo> {
    checkArtifactName(name);
    const meta = opts.meta ?? {};
    for (const [k, v] of Object.entries(meta)) {
      if (typeof v !== "string") throw new Error(`artifact meta "${k}" must be a string, got ${typeof v}`);
    }
    const file = `${sha256hex(name).slice(0, 32)}-${randomBytes(8).toString("hex")}`;
    const tmp = join(this.tmpDir, file);
    const hash = createHash("sha256");
    let size = 0;
    const fh = await open(tmp, "w");
    try {
      const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> =
        data instanceof Uint8Array ? [data] : data;
      for await (const chunk of chunks) {
        if (!(chunk instanceof Uint8Array)) throw new Error(`artifact "${name}": chunks must be Uint8Array`);
        hash.update(chunk);
        size += chunk.length;
        await fh.write(chunk);
      }
      await fh.sync();
    } catch (err) {
      await fh.close();
      rmSync(tmp, { force: true });
      throw err;
    }
    await fh.close();
    renameSync(tmp, join(this.dataDir, file));
    const m: MetaFile = {
      name,
      size,
      digest: hash.digest("hex"),
      meta: { ...meta },
      mtime: new Date().toISOString(),
      file,
    };
    const metaPath = join(this.metaDir, `${sha256hex(name)}.json`);
    writeFileSync(`${metaPath}.tmp`, JSON.stringify(m));
    renameSync(`${metaPath}.tmp`, metaPath);
    const old = this.index.get(name);
    this.index.set(name, m);
    if (old) rmSync(join(this.dataDir, old.file), { force: true });
    return toInfo(m);
  }

  async get(name: string): Promise<Uint8Array | undefined> {
    checkArtifactName(name);
    const m = this.index.get(name);
    if (!m) return undefined;
    const buf = await readFile(join(this.dataDir, m.file));
    const digest = createHash("sha256").update(buf).digest("hex");
    if (digest !== m.digest)
      throw new Error(`artifact "${name}" is corrupt: sha256 ${digest}, expected ${m.digest}`);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }

  async getStream(name: string): Promise<AsyncIterable<Uint8Array> | undefined> {
    checkArtifactName(name);
    const m = this.index.get(name);
    if (!m) return undefined;
    // Opened now, so that a later replace or delete of the name cannot pull the file from under the reader.
    const fh = await open(join(this.dataDir, m.file), "r");
    const stream = fh.createReadStream({ highWaterMark: 256 * 1024 });
    async function* chunks(): AsyncGenerator<Uint8Array> {
      const hash = createHash("sha256");
      for await (const c of stream) {
        const chunk = c as Buffer;
        hash.update(chunk);
        yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      }
      const digest = hash.digest("hex");
      if (digest !== m!.digest)
        throw new Error(`artifact "${name}" is corrupt: sha256 ${digest}, expected ${m!.digest}`);
    }
    return chunks();
  }

  async info(name: string): Promise<ArtifactInfo | undefined> {
    checkArtifactName(name);
    const m = this.index.get(name);
    return m ? toInfo(m) : undefined;
  }

  async list(prefix = ""): Promise<ArtifactInfo[]> {
    return [...this.index.values()]
      .filter((m) => m.name.startsWith(prefix))
      .map(toInfo)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<boolean> {
    checkArtifactName(name);
    const m = this.index.get(name);
    if (!m) return false;
    rmSync(join(this.metaDir, `${sha256hex(name)}.json`), { force: true });
    this.index.delete(name);
    rmSync(join(this.dataDir, m.file), { force: true });
    return true;
  }
}
