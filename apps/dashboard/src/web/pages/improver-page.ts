import { create } from "@bufbuild/protobuf";
import { ImproveImagesRequestSchema } from "@idpo/proto";
import { describeError, improver } from "../api.js";
import { h, pngImage, replace } from "../dom.js";

/** Reads a picture file and redraws it at `size`×`size` (the improver's resolution) as PNG bytes. */
async function resizedPng(file: Blob, size: number): Promise<Uint8Array> {
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = size;
  canvas.height = size;
  const ctx = canvas.getContext("2d")!;
  ctx.fillStyle = "#000";
  ctx.fillRect(0, 0, size, size);
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, size, size);
  const blob = await new Promise<Blob | null>((r) => canvas.toBlob(r, "image/png"));
  if (!blob) throw new Error("the browser could not encode the resized image");
  return new Uint8Array(await blob.arrayBuffer());
}

function numberField(id: string, label: string, value: string, step: string) {
  const input = h("input", { id, type: "number", value, step, min: 0 });
  return { input, row: h("label", {}, `${label} `, input) };
}

/** The Improver page's inputs and outputs. */
interface ImproverView {
  model: HTMLParagraphElement;
  file: HTMLInputElement;
  prompt: HTMLInputElement;
  sT: HTMLInputElement;
  sI: HTMLInputElement;
  strength: HTMLInputElement;
  steps: HTMLInputElement;
  seed: HTMLInputElement;
  go: HTMLButtonElement;
  error: HTMLParagraphElement;
  result: HTMLDivElement;
}

/** The Improver's public API in the browser: a PNG and a prompt in, the improved image out. */
export async function improverPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  const v = improverView(root);
  let size = await showModel(v.model, signal);
  const ready = () => {
    v.go.disabled = !(v.file.files && v.file.files.length > 0);
  };
  v.file.addEventListener("change", ready);
  v.go.addEventListener("click", async () => {
    const f = v.file.files?.[0];
    if (!f) return;
    v.error.textContent = "";
    v.go.disabled = true;
    try {
      if (size <= 0)
        size = Number(
          JSON.parse((await improver.getModel({}, { signal })).configJson || "{}")?.unet?.imageSize ?? 0,
        );
      if (size <= 0) throw new Error("the improver has no model loaded yet");
      await improve(v, await resizedPng(f, size), size, signal);
    } catch (err) {
      v.error.textContent = err instanceof Error && !("code" in err) ? err.message : describeError(err);
    } finally {
      ready();
    }
  });
}

/** Lays the page out in `root`: the model line, the picture, prompt and sampling inputs, the result. */
function improverView(root: HTMLElement): ImproverView {
  const model = h("p", { class: "muted", id: "improver-model" }, "asking the improver which model it holds…");
  const file = h("input", { type: "file", id: "improver-file", accept: "image/png" });
  const prompt = h("input", {
    id: "improver-prompt",
    size: 50,
    value: "a small red circle on a black background",
  });
  const sT = numberField("improver-st", "s_T (text guidance)", "3.5", "0.1");
  const sI = numberField("improver-si", "s_I (image guidance)", "3.0", "0.1");
  const strength = numberField("improver-strength", "strength (0, 1]", "1", "0.05");
  const steps = numberField("improver-steps", "steps", "20", "1");
  const seed = numberField("improver-seed", "seed", "0", "1");
  const go = h("button", { id: "improve", disabled: true }, "improve");
  const error = h("p", { class: "error", id: "improver-error" });
  const result = h("div", { class: "before-after", id: "improver-result" });
  replace(
    root,
    h("h1", {}, "Improver"),
    model,
    h(
      "section",
      { class: "card" },
      h("p", {}, file),
      h("p", {}, "prompt ", prompt),
      h("p", {}, sT.row, " ", sI.row, " ", strength.row, " ", steps.row, " ", seed.row),
      go,
    ),
    error,
    result,
  );
  const inputs = {
    sT: sT.input,
    sI: sI.input,
    strength: strength.input,
    steps: steps.input,
    seed: seed.input,
  };
  return { model, file, prompt, ...inputs, go, error, result };
}

/** Says which model the improver holds; returns its image size (0 when it holds none or did not answer). */
async function showModel(model: HTMLElement, signal: AbortSignal): Promise<number> {
  let size = 0;
  try {
    const res = await improver.getModel({}, { signal });
    if (!res.checkpoint) {
      model.textContent =
        "the improver has no model loaded yet (a run loads one once it has trained its improver)";
    } else {
      size = Number(JSON.parse(res.configJson)?.unet?.imageSize ?? 0);
      model.textContent = `model ${res.checkpoint.id} · ${size}×${size} images · backend ${res.backend}`;
    }
  } catch (err) {
    model.textContent = describeError(err);
    model.className = "error";
  }
  return size;
}

/** Improves `before` (PNG bytes, `size`×`size`) with the page's prompt and settings and shows both images. */
async function improve(
  v: ImproverView,
  before: Uint8Array,
  size: number,
  signal: AbortSignal,
): Promise<void> {
  const num = (i: HTMLInputElement) => (i.value.trim() === "" ? undefined : Number(i.value));
  const req = create(ImproveImagesRequestSchema, {
    images: [{ data: { case: "png", value: before } }],
    prompts: [v.prompt.value],
    textGuidanceScale: num(v.sT),
    imageGuidanceScale: num(v.sI),
    strength: num(v.strength),
    steps: num(v.steps) ?? 0,
    seed: BigInt(Math.max(0, Math.floor(num(v.seed) ?? 0))),
  });
  const t0 = performance.now();
  const res = await improver.improveImages(req, { signal });
  const out = res.images[0];
  if (out?.data.case !== "png") throw new Error("the improver returned no PNG");
  replace(
    v.result,
    h("figure", {}, pngImage(before, "before", "px big"), h("figcaption", {}, `before (${size}×${size})`)),
    h(
      "figure",
      { id: "improved" },
      pngImage(out.data.value, "after", "px big"),
      h("figcaption", {}, `after · ${res.checkpoint?.id ?? ""} · ${Math.round(performance.now() - t0)} ms`),
    ),
  );
}
