/**
 * Test fixtures of @idpo/data, for the tests of other packages: synthetic Pick-a-Pic parquet shards and
 * hand-built PNG files (including decompression bombs). Imported as "@idpo/data/test-fixtures"; not part of
 * the package's public API (`src/index.ts`).
 */
export { type PickAPicFixtureRow, pickAPicFixtureRows, writePickAPicFixture } from "./pickapic-fixture.js";
export { blackPngBomb, type PngFileHeader, pngCrc32, pngFile } from "./png-fixture.js";
