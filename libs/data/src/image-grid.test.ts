import { describe, expect, it } from "vitest";
import { solidImage } from "./image.js";
import { composeGrid } from "./image-grid.js";

describe("composeGrid", () => {
  it("places cells with padding, scaling each image", () => {
    const red = solidImage(2, 2, [1, 0, 0]);
    const blue = solidImage(2, 2, [0, 0, 1]);
    const g = composeGrid([[red, blue], [blue]], { padding: 1, scale: 2, background: [0, 0, 0] });
    // Cells 4x4 (2x2 scaled by 2), padding 1: width 1 + 2*(4+1) = 11, height the same.
    expect([g.height, g.width]).toEqual([11, 11]);
    const px = (i: number, j: number) => Array.from(g.data.subarray((i * 11 + j) * 3, (i * 11 + j) * 3 + 3));
    expect(px(0, 0)).toEqual([0, 0, 0]);
    expect(px(1, 1)).toEqual([1, 0, 0]);
    expect(px(4, 4)).toEqual([1, 0, 0]);
    expect(px(1, 5)).toEqual([0, 0, 0]);
    expect(px(1, 6)).toEqual([0, 0, 1]);
    expect(px(6, 1)).toEqual([0, 0, 1]);
    expect(px(6, 6)).toEqual([0, 0, 0]);
  });
});
