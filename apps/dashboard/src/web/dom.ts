/** Attributes of {@link h}: `on*` functions become listeners, other values attributes. */
type Attrs = Record<string, string | number | boolean | undefined | ((ev: Event) => void)>;
type Child = Node | string | number | null | undefined | false;

/** Creates an element with attributes and children (strings become text nodes, so nothing is parsed as HTML). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.slice(2).toLowerCase(), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** Replaces an element's children. */
export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** An <img> showing PNG bytes (its object URL is released once loaded). */
export function pngImage(bytes: Uint8Array, title: string, className = "px"): HTMLImageElement {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: "image/png" }));
  const img = h("img", { class: className, alt: title, title, src: url });
  img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  return img;
}
