import { describe, expect, it } from "vitest";
import { loadVocabulary, PAD_TOKEN, shapesVocabulary, Tokenizer, UNK_TOKEN } from "./tokenizer.js";

const COLORS = ["red", "green", "blue", "yellow", "magenta", "cyan", "orange", "white"];
const BGS = ["black", "gray", "navy", "white", "beige"];

describe("tokenizer", () => {
  it("ships a vocabulary with the special tokens first and every shapes-world word", () => {
    const v = shapesVocabulary();
    expect(v[0]).toBe(PAD_TOKEN);
    expect(v[1]).toBe(UNK_TOKEN);
    for (const w of [
      "a",
      "on",
      "background",
      "small",
      "medium",
      "large",
      "circle",
      "square",
      "triangle",
      ...COLORS,
      ...BGS,
    ]) {
      expect(v).toContain(w);
    }
    expect(new Set(v).size).toBe(v.length);
  });

  it("lowercases, splits on non-letters, maps unknown words to [UNK] and pads", () => {
    const v = shapesVocabulary();
    const tok = new Tokenizer(v, 10);
    const b = tok.encode(["A Small RED circle, on a black-background!", "a purple circle"]);
    const id = (w: string) => v.indexOf(w);
    expect([...b.ids.slice(0, 10)]).toEqual([
      id("a"),
      id("small"),
      id("red"),
      id("circle"),
      id("on"),
      id("a"),
      id("black"),
      id("background"),
      0,
      0,
    ]);
    expect([...b.mask.slice(0, 10)]).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 0, 0]);
    expect([...b.ids.slice(10, 13)]).toEqual([id("a"), 1, id("circle")]);
    expect(tok.decode(b.ids.slice(0, 10))).toBe("a small red circle on a black background");
  });

  it("encodes the empty prompt as the null condition: all [PAD], mask all zero", () => {
    const tok = new Tokenizer(shapesVocabulary(), 6);
    const b = tok.encode(["", "  ,, "]);
    expect([...b.ids]).toEqual(new Array(12).fill(0));
    expect([...b.mask]).toEqual(new Array(12).fill(0));
  });

  it("truncates to the fixed length", () => {
    const tok = new Tokenizer(shapesVocabulary(), 3);
    const b = tok.encode(["a large blue square on a white background"]);
    expect(b.length).toBe(3);
    expect([...b.mask]).toEqual([1, 1, 1]);
    expect(tok.decode(b.ids)).toBe("a large blue");
  });

  it("rejects malformed vocabularies", () => {
    expect(() => new Tokenizer(["a", "b"], 4)).toThrow(/must start with \[PAD\]/);
    expect(() => new Tokenizer([PAD_TOKEN, UNK_TOKEN, "x", "x"], 4)).toThrow(/duplicate/);
    expect(() => new Tokenizer([PAD_TOKEN, UNK_TOKEN, "Bad"], 4)).toThrow(/lowercase/);
    expect(() => loadVocabulary("/nonexistent/vocab.txt")).toThrow();
  });
});
