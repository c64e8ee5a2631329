/**
 * @idpo/bench-paper: the paper benchmark behind `idpo bench paper`. It trains the base, the improvement
 * model, SFT, offline DPO, SPIN and the iterative method through the mesh, evaluates them on train and
 * held-out prompts, searches what makes the iterative method work, and writes RESULTS.md; every stage's
 * result is kept under the data directory, so a second invocation resumes where the first stopped.
 */
export { type PaperConfig, type PaperConfigName, paperConfig } from "./config.js";
export { type BenchPaperOptions, runBenchPaper } from "./run-paper.js";
