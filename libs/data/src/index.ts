/**
 * @idpo/data: images (HWC float32 in [0, 1]) and their codecs, the shapes world (grammar, renders, offline
 * pairs), the on-disk preference-pair format, Pick-a-Pic ingestion, image grids, histogram counts and a
 * seeded PRNG. Test fixtures live in "@idpo/data/test-fixtures". See libs/data/README.md.
 */
export * from "./codecs.js";
export * from "./data-rng.js";
export * from "./histogram.js";
export * from "./image.js";
export * from "./image-grid.js";
export * from "./pair-dataset.js";
export * from "./pickapic.js";
export * from "./resize.js";
export * from "./shapes-grammar.js";
export * from "./shapes-pairs.js";
export * from "./shapes-render.js";
