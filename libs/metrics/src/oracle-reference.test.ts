import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import {
  allShapesPrompts,
  DataRng,
  formatShapesPrompt,
  type Image,
  renderDegraded,
  renderIdeal,
  solidImage,
} from "@idpo/data";
import { afterAll, describe, expect, it } from "vitest";
import { oracleReward } from "./oracle.js";
import { vendiScore } from "./vendi.js";

const PYTHON = "/usr/bin/python3";
const SCRIPT = join(dirname(fileURLToPath(import.meta.url)), "..", "test-support", "oracle_reference.py");
const hasNumpy = spawnSync(PYTHON, ["-c", "import numpy"], { stdio: "ignore" }).status === 0;
const COMPONENTS = ["reward", "color", "bg", "shape", "size", "center", "clean"] as const;

const work = mkdtempSync(join(tmpdir(), "idpo-oracle-ref-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

interface Reference {
  scores: (Record<(typeof COMPONENTS)[number], number> | null)[];
  vendi: number[];
  errors: (string | null)[];
}

/** Runs the numpy reference on same-sized images. */
function reference(images: Image[], prompts: string[], vendiGroups: number[][] = []): Reference {
  const size = images[0].height;
  const flat = new Float32Array(images.length * size * size * 3);
  for (let i = 0; i < images.length; i++) flat.set(images[i].data, i * size * size * 3);
  const tag = `${size}-${images.length}-${vendiGroups.length}`;
  writeFileSync(join(work, `${tag}.f32`), new Uint8Array(flat.buffer));
  writeFileSync(
    join(work, `${tag}.json`),
    JSON.stringify({ n: images.length, size, prompts, vendi_groups: vendiGroups }),
  );
  const run = spawnSync(PYTHON, [SCRIPT, join(work, `${tag}.f32`), join(work, `${tag}.json`)], {
    encoding: "utf8",
    maxBuffer: 64 << 20,
  });
  if (run.status !== 0) throw new Error(`oracle_reference.py failed: ${run.stderr}`);
  return JSON.parse(run.stdout) as Reference;
}

function uniformImage(rng: DataRng, s: number): Image {
  const img = solidImage(s, s, [0, 0, 0]);
  for (let k = 0; k < img.data.length; k++) img.data[k] = rng.next();
  return img;
}

/** Random rectangles of random colors on a palette background: large clean regions, hard edges. */
function blocksImage(rng: DataRng, s: number, bg: readonly number[]): Image {
  const img = solidImage(s, s, [bg[0], bg[1], bg[2]]);
  const blocks = 1 + rng.int(3);
  for (let b = 0; b < blocks; b++) {
    const c = [rng.next(), rng.next(), rng.next()];
    const i0 = rng.int(s);
    const j0 = rng.int(s);
    const h = 1 + rng.int(s - i0);
    const w = 1 + rng.int(s - j0);
    for (let i = i0; i < i0 + h; i++) for (let j = j0; j < j0 + w; j++) img.data.set(c, (i * s + j) * 3);
  }
  return img;
}

describe.skipIf(!hasNumpy)(
  "oracle and Vendi agree with the independent numpy reference (docs/architecture.md)",
  () => {
    const prompts = allShapesPrompts();

    it("on random, blocky, rendered, degraded and edge-case images of many sizes, to 1e-4 on every component", () => {
      const rng = new DataRng(20240607);
      let worst = 0;
      let compared = 0;
      for (const s of [1, 2, 3, 5, 8, 16, 32]) {
        const images: Image[] = [];
        const texts: string[] = [];
        const add = (img: Image, prompt: string) => {
          images.push(img);
          texts.push(prompt);
        };
        const pick = () => formatShapesPrompt(rng.choice(prompts));
        for (let k = 0; k < 25; k++) add(uniformImage(rng, s), pick());
        for (let k = 0; k < 25; k++) {
          const p = rng.choice(prompts);
          const bg = {
            black: [0, 0, 0],
            gray: [0.5, 0.5, 0.5],
            navy: [0.05, 0.05, 0.35],
            white: [1, 1, 1],
            beige: [0.96, 0.96, 0.86],
          }[p.bg];
          add(blocksImage(rng, s, bg), formatShapesPrompt(p));
        }
        if (s >= 5) {
          for (let k = 0; k < 40; k++) {
            const p = rng.choice(prompts);
            // Scored against its own prompt half the time, against another prompt otherwise.
            const target = k % 2 === 0 ? formatShapesPrompt(p) : pick();
            add(renderDegraded(p, s, rng.next(), rng).image, target);
          }
          for (let k = 0; k < 10; k++) {
            const p = rng.choice(prompts);
            add(renderIdeal(p, s), formatShapesPrompt(p));
          }
        }
        add(solidImage(s, s, [0, 0, 0]), "a small red circle on a black background");
        add(solidImage(s, s, [1, 1, 1]), "a large blue square on a white background");
        add(solidImage(s, s, [0.9, 0.1, 0.1]), "a medium red triangle on a black background");

        const ref = reference(images, texts);
        images.forEach((img, i) => {
          const ours = oracleReward(img, texts[i]);
          const theirs = ref.scores[i];
          expect(ref.errors[i]).toBeNull();
          if (theirs === null) throw new Error(`reference could not score image ${i}`);
          for (const c of COMPONENTS) {
            const d = Math.abs(ours[c] - theirs[c]);
            worst = Math.max(worst, d);
            if (d > 1e-4)
              throw new Error(`S=${s} image ${i} "${texts[i]}": ${c} ours ${ours[c]} reference ${theirs[c]}`);
          }
          compared++;
        });
      }
      expect(compared).toBeGreaterThan(500);
      expect(worst).toBeLessThan(1e-4);
    });

    it("the reference refuses the same out-of-grammar prompts", () => {
      const img = solidImage(4, 4, [0, 0, 0]);
      const ref = reference(
        [img, img],
        ["a small white circle on a white background", "a big red circle on a black background"],
      );
      expect(ref.errors[0]).toMatch(/contrast/);
      expect(ref.errors[1]).toMatch(/unknown word/);
    });

    it("Vendi scores match numpy's eigvalsh to 1e-6 relative, for sets of 1 to 150 images", () => {
      const rng = new DataRng(99);
      const s = 8;
      const images: Image[] = [];
      for (let k = 0; k < 150; k++) {
        const p = rng.choice(prompts);
        images.push(k % 3 === 0 ? uniformImage(rng, s) : renderDegraded(p, s, rng.next(), rng).image);
      }
      // Duplicates and a constant 0.5 image (zero vector after centring) too.
      images.push(images[1], images[1], solidImage(s, s, [0.5, 0.5, 0.5]));
      const groups: number[][] = [
        [0],
        [0, 1],
        [1, 150, 151],
        [1, 152],
        Array.from({ length: 40 }, (_, i) => i * 3),
      ];
      groups.push(Array.from({ length: 150 }, (_, i) => i));
      for (let g = 0; g < 6; g++)
        groups.push(Array.from({ length: 2 + rng.int(30) }, () => rng.int(images.length)));
      const ref = reference(
        images,
        images.map(() => "a small red circle on a black background"),
        groups,
      );
      groups.forEach((g, i) => {
        const ours = vendiScore(g.map((k) => images[k]));
        expect(Math.abs(ours - ref.vendi[i]) / ref.vendi[i]).toBeLessThan(1e-6);
      });
    });
  },
);
