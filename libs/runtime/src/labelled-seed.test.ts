import { describe, expect, it } from "vitest";
import { labelledSeed } from "./labelled-seed.js";

describe("labelledSeed", () => {
  it("is the first four bytes, little-endian, of SHA-256 over the colon-joined namespace, master and labels", () => {
    // sha256("idpo:7:ours") starts 26 db a5 36; sha256("idpo-bench:3:base") starts c2 b8 5a 14 (sha256sum).
    expect(labelledSeed("idpo", 7n, "ours")).toBe(0x36a5db26);
    expect(labelledSeed("idpo-bench", 3, "base")).toBe(0x145ab8c2);
  });

  it('hashes the labels one after another, so (a, b) and ("a:b") give the same stream', () => {
    expect(labelledSeed("idpo", 1, "tune", 2)).toBe(labelledSeed("idpo", 1, "tune:2"));
    expect(labelledSeed("idpo", 1, "a")).not.toBe(labelledSeed("idpo", 2, "a"));
  });
});
