/**
 * `npm run bench`: speed of the diffusion model (preset shapes16, the default shapes world) on every
 * tfjs backend available here, next to the same architecture in PyTorch, with our/PyTorch ratios.
 *
 * Each configuration runs in its own process (bench/measure.ts; bench/torch_unet.py under
 * /usr/bin/python3), one after the other. Figures also go to bench/out/ as JSON.
 *
 * Columns: wasm-1 and wasm-2 are one process with 1 or 2 wasm threads training in its own thread;
 * wasm-w2 trains with 2 data-parallel workers of one thread each (DataParallelTrainer; training only);
 * wasm-1x2 is two wasm-1 processes at once, their figures summed: what a second core is worth on this
 * machine for work that shares nothing, the ceiling of any two-worker speed-up.
 *
 * Options: --only wasm-1,wasm-2,wasm-w2,wasm-1x2,cpu,tensorflow,tensorflow-gpu,onnx-1,onnx-2,torch-1,torch-2
 *          (default: all available; onnx-t: the inference sidecar's ONNX Runtime engine, bench/measure-onnx.ts)
 *          --min-seconds N (per measurement, default 6)  --profile (per-kernel profile of the wasm runs)
 * Environment: IDPO_BENCH_PYTHON overrides the interpreter of the PyTorch reference.
 */
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type DiffusionConfig, preset } from "@idpo/diffusion";
import { summedCopies } from "./copies.js";
import { cpuPeak } from "./cpu-peak.js";
import { type ModelCost, modelCost } from "./flops.js";
import type { BackendResult, KernelTime, Measurement } from "./measure.js";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
/** Interpreter of the PyTorch reference (Debian's python3-torch lives under /usr/bin/python3). */
const PYTHON = process.env.IDPO_BENCH_PYTHON ?? "/usr/bin/python3";

/** One column of the table. */
interface Column {
  /** Label, e.g. "wasm-2". */
  id: string;
  kind: "tfjs" | "onnx" | "torch";
  backend: string;
  threads: number;
  /** Cores the column uses (threads, or workers × 1 thread): ratios pair columns of equal cores. */
  cores: number;
  /** Data-parallel training workers (1: training in the process's own thread). */
  workers: number;
  /** Identical processes run at the same time, their throughputs summed (1: one process). */
  copies: number;
  /** Batch sizes (smaller for the slow pure-JS cpu backend; images/s stay comparable). */
  forwardBatch: number;
  sampleImages: number;
  trainPairs: number;
  trainImages: number;
}

type Metric = "forward" | "sampling" | "improver" | "training" | "epsTraining";
const METRICS: { key: Metric; label: string; unit: string }[] = [
  { key: "forward", label: "UNet forward", unit: "img/s" },
  { key: "sampling", label: "sampling DDIM-20 + CFG", unit: "img/s" },
  { key: "improver", label: "improver, double guidance", unit: "img/s" },
  { key: "training", label: "DPO training", unit: "pairs/s" },
  { key: "epsTraining", label: "ε-MSE training", unit: "img/s" },
];
/** Targets of data-parallel training: 2 workers vs the faster PyTorch column, and vs 1 worker. */
const PARALLEL_TARGETS = { vsTorch: 0.45, vsOneWorker: 1.7, trainVsForwardPerThread: 0.8 };
/** Targets of the inference sidecar: ONNX Runtime / tfjs wasm at equal threads, and / the faster PyTorch column. */
const ONNX_TARGETS = { vsWasm: 1.5, vsTorch: 1.3 };
const ONNX_METRICS = ["forward", "sampling", "improver"] as const;
/** Targets of tfjs: ours / PyTorch at equal threads. */
const TARGETS: Partial<Record<Metric, number>> = { training: 0.4, sampling: 0.5 };

function parseArgs(argv: string[]): { only?: Set<string>; minSeconds: number; profile: boolean } {
  const out: { only?: Set<string>; minSeconds: number; profile: boolean } = { minSeconds: 6, profile: false };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--only") out.only = new Set(argv[++i].split(","));
    else if (argv[i] === "--min-seconds") out.minSeconds = Number(argv[++i]);
    else if (argv[i] === "--profile") out.profile = true;
    else throw new Error(`bench: unknown argument ${argv[i]} (see bench/run.ts)`);
  }
  if (!(out.minSeconds > 0)) throw new Error("bench: --min-seconds must be positive");
  return out;
}

function installed(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

/** Why PyTorch cannot run here, or undefined when it can. */
function torchMissing(): string | undefined {
  const probe = spawnSync(PYTHON, ["-c", "import torch; print(torch.__version__)"], { encoding: "utf8" });
  if (probe.error) return `${PYTHON} not found (${probe.error.message})`;
  if (probe.status !== 0) return `${PYTHON} cannot import torch (${probe.stderr.trim().split("\n").pop()})`;
  return undefined;
}

/** Runs a child to completion, streaming its stderr, and returns the BENCH_RESULT it printed. */
function runChild<T>(cmd: string, args: string[], label: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: root, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("error", reject);
    child.on("close", (code) => {
      const line = stdout.split("\n").find((l) => l.startsWith("BENCH_RESULT "));
      if (code !== 0 || line == null) {
        reject(
          new Error(`bench ${label} failed (exit ${code}):\n${stderr.slice(-3000)}${stdout.slice(-1000)}`),
        );
        return;
      }
      resolve(JSON.parse(line.slice("BENCH_RESULT ".length)) as T);
    });
  });
}

function fmt(x: number | undefined, digits = 2): string {
  if (x == null || !Number.isFinite(x)) return "-";
  if (x >= 100) return x.toFixed(0);
  if (x >= 10) return x.toFixed(1);
  return x.toFixed(digits);
}

function pad(s: string, n: number, left = false): string {
  return left ? s.padStart(n) : s.padEnd(n);
}

/** Units per CPU-second of a measurement (all of the process's threads). */
function perCpuSecond(m: Measurement): number {
  return m.unitsPerCall / m.cpuSecondsPerCall;
}

/**
 * The inference sidecar's targets: onnx-t / wasm-t at equal threads and onnx-t / the faster PyTorch
 * column, wall clock (the figure of merit on an idle machine) and, in brackets, work per CPU-second
 * (what a busy machine still measures fairly).
 */
function printOnnx(results: Map<string, BackendResult>): void {
  const onnx = [1, 2].filter((t) => results.has(`onnx-${t}`));
  if (onnx.length === 0) return;
  console.log("");
  console.log(
    "  inference sidecar engine (onnx-t = ONNX Runtime CPU provider, t intra-op threads; wall clock, cpu-time in brackets):",
  );
  for (const m of ONNX_METRICS) {
    const parts: string[] = [];
    for (const t of onnx) {
      const ours = results.get(`onnx-${t}`)?.[m];
      const wasm = results.get(`wasm-${t}`)?.[m];
      if (ours && wasm) {
        const r = ours.perSecond / wasm.perSecond;
        const c = perCpuSecond(ours) / perCpuSecond(wasm);
        parts.push(
          `onnx-${t}/wasm-${t} ${r.toFixed(2)}×${r >= ONNX_TARGETS.vsWasm ? " ok" : ` <${ONNX_TARGETS.vsWasm}`} (${c.toFixed(2)}×)`,
        );
      }
      const torch = ["torch-1", "torch-2"]
        .map((id) => results.get(id)?.[m])
        .filter((x): x is Measurement => x != null)
        .sort((a, b) => b.perSecond - a.perSecond)[0];
      if (ours && torch) {
        const r = ours.perSecond / torch.perSecond;
        const c = perCpuSecond(ours) / perCpuSecond(torch);
        parts.push(
          `onnx-${t}/faster torch ${r.toFixed(2)}×${r >= ONNX_TARGETS.vsTorch ? " ok" : ` <${ONNX_TARGETS.vsTorch}`} (${c.toFixed(2)}×)`,
        );
      }
    }
    console.log(`    ${pad(METRICS.find((x) => x.key === m)?.label ?? m, 28)} ${parts.join("; ")}`);
  }
  // Every column runs the same two sampling workloads: DDIM-20 with CFG is 2 UNet evaluations per
  // image and step, the improver's double guidance 3 (and a 6-channel first conv), so improver /
  // sampling images/s is about 2/3 in every column; a column far from it was timed under changing load.
  const consistency = [...results]
    .filter(([, r]) => r.sampling && r.improver)
    .map(([id, r]) => `${id} ${((r.improver?.perSecond ?? 0) / (r.sampling?.perSecond ?? 1)).toFixed(2)}`);
  if (consistency.length > 0)
    console.log(
      `    improver / DDIM-20 + CFG images/s (≈ 0.67 when the load held still): ${consistency.join(", ")}`,
    );
}

/**
 * The data-parallel training figures the targets are about: 2 workers against the faster PyTorch
 * column and against 1 worker, and per-thread training GFLOP/s against forward GFLOP/s.
 */
function printParallel(results: Map<string, BackendResult>, peakGflops: number): void {
  const one = results.get("wasm-1");
  const two = results.get("wasm-w2");
  if (one == null && two == null) return;
  console.log("");
  console.log("  data-parallel training (wasm-w2 = 2 workers × 1 thread, wasm-1 = 1 thread in-process):");
  for (const [m, label] of [
    ["training", "DPO"],
    ["epsTraining", "ε-MSE"],
  ] as const) {
    const parts: string[] = [];
    const torch = ["torch-1", "torch-2"]
      .map((id) => results.get(id)?.[m])
      .filter((x): x is Measurement => x != null)
      .sort((a, b) => b.perSecond - a.perSecond)[0];
    if (two && torch) {
      const r = two[m].perSecond / torch.perSecond;
      parts.push(
        `w2 / faster torch ${r.toFixed(2)}× (target ≥ ${PARALLEL_TARGETS.vsTorch}${r >= PARALLEL_TARGETS.vsTorch ? " ok" : ""})`,
      );
    }
    if (two && one) {
      const r = two[m].perSecond / one[m].perSecond;
      parts.push(
        `w2 / w1 ${r.toFixed(2)}× (target ≥ ${PARALLEL_TARGETS.vsOneWorker}${r >= PARALLEL_TARGETS.vsOneWorker ? " ok" : ""})`,
      );
    }
    if (one?.forward) {
      const r = one[m].gflops / one.forward.gflops;
      parts.push(
        `1-thread training/forward GFLOP/s ${r.toFixed(2)} (target ≥ ${PARALLEL_TARGETS.trainVsForwardPerThread}${r >= PARALLEL_TARGETS.trainVsForwardPerThread ? " ok" : ""})`,
      );
    }
    if (two) parts.push(`w2 at ${((100 * two[m].gflops) / peakGflops).toFixed(1)}% of the physical limit`);
    console.log(`    ${pad(label, 6)} ${parts.join("; ")}`);
  }
  printSecondCore(results);
}

/**
 * What a second core is worth here (two independent wasm-1 processes against one), for every metric,
 * and how much of that the 2-worker training reaches: a two-worker speed-up cannot exceed the first.
 */
function printSecondCore(results: Map<string, BackendResult>): void {
  const one = results.get("wasm-1");
  const pair = results.get("wasm-1x2");
  if (one == null || pair == null) return;
  const parts = METRICS.flatMap((m) => {
    const a = one[m.key];
    const b = pair[m.key];
    return a && b ? [`${m.label} ${(b.perSecond / a.perSecond).toFixed(2)}×`] : [];
  });
  console.log(`    second core (wasm-1x2 / wasm-1, two processes sharing nothing): ${parts.join(", ")}`);
  const two = results.get("wasm-w2");
  if (two == null) return;
  const reach = (["training", "epsTraining"] as const).map((k) => {
    const gain = pair[k].perSecond / one[k].perSecond - 1;
    const got = two[k].perSecond / one[k].perSecond - 1;
    return `${k === "training" ? "DPO" : "ε-MSE"} ${gain > 0 ? `${((100 * got) / gain).toFixed(0)}%` : "-"}`;
  });
  console.log(`    share of that gain the 2-worker training reaches: ${reach.join(", ")}`);
}

type BenchOptions = ReturnType<typeof parseArgs>;

async function main(): Promise<void> {
  const opts = parseArgs(process.argv.slice(2));
  const cfg = preset("shapes16");
  const cost = modelCost(cfg);
  const improverCost = modelCost({ ...cfg, unet: { ...cfg.unet, condChannels: cfg.unet.inChannels } });
  const { columns, skipped } = benchColumns();
  const selected = columns.filter((c) => opts.only == null || opts.only.has(c.id));
  const peak = printHeader(cfg, cost, improverCost, skipped);

  const results = new Map<string, BackendResult>();
  const specPath = join(tmpdir(), `idpo-bench-spec-${process.pid}.json`);
  for (const col of selected) {
    const started = performance.now();
    process.stdout.write(`  running ${col.id} ... `);
    const result =
      col.kind === "torch"
        ? await runTorch(col, torchSpec(col, opts, cfg, cost, improverCost), specPath)
        : await runTfjsOrOnnx(col, opts);
    results.set(col.id, result);
    console.log(
      `${((performance.now() - started) / 1000).toFixed(0)} s (load ${result.loadBefore[0].toFixed(2)} → ${result.loadAfter[0].toFixed(2)})`,
    );
  }

  printTable(results, selected);
  printParallel(results, peak.gflops);
  printFooter(results);
  printProfiles(results);
  writeRecord(cost, improverCost, skipped, results);
}

/** Every column this machine can run, and why the others are skipped. */
function benchColumns(): { columns: Column[]; skipped: string[] } {
  const threads = [1, 2];
  const full = { forwardBatch: 32, sampleImages: 32, trainPairs: 16, trainImages: 32 };
  const columns: Column[] = [];
  const skipped: string[] = [];
  for (const [backend, pkg] of [
    ["tensorflow-gpu", "@tensorflow/tfjs-node-gpu"],
    ["tensorflow", "@tensorflow/tfjs-node"],
  ] as const) {
    if (installed(pkg)) {
      const threads = cpus().length;
      columns.push({
        id: backend,
        kind: "tfjs",
        backend,
        threads,
        cores: threads,
        workers: 1,
        copies: 1,
        ...full,
      });
    } else skipped.push(`${backend}: ${pkg} is not installed`);
  }
  for (const t of threads) {
    columns.push({
      id: `wasm-${t}`,
      kind: "tfjs",
      backend: "wasm",
      threads: t,
      cores: t,
      workers: 1,
      copies: 1,
      ...full,
    });
  }
  columns.push({
    id: "wasm-w2",
    kind: "tfjs",
    backend: "wasm",
    threads: 1,
    cores: 2,
    workers: 2,
    copies: 1,
    ...full,
  });
  columns.push({
    id: "wasm-1x2",
    kind: "tfjs",
    backend: "wasm",
    threads: 1,
    cores: 2,
    workers: 1,
    copies: 2,
    ...full,
  });
  // The pure-JS cpu backend is ~20× slower: small batches keep its column to a few minutes.
  columns.push({
    id: "cpu",
    kind: "tfjs",
    backend: "cpu",
    threads: 1,
    cores: 1,
    workers: 1,
    copies: 1,
    forwardBatch: 4,
    sampleImages: 2,
    trainPairs: 1,
    trainImages: 2,
  });
  // The inference sidecar's engine (ONNX Runtime, CPU provider) at the wasm columns' thread counts.
  for (const t of threads) {
    const base = columns.find((c) => c.id === `wasm-${t}`);
    if (base) columns.push({ ...base, id: `onnx-${t}`, kind: "onnx", backend: "onnxruntime" });
  }
  columns.push(...torchColumns(threads, full, skipped));
  return { columns, skipped };
}

type ColumnSizes = Pick<Column, "forwardBatch" | "sampleImages" | "trainPairs" | "trainImages">;

/** The PyTorch columns, or none with the reason pushed to `skipped`. */
function torchColumns(threads: readonly number[], full: ColumnSizes, skipped: string[]): Column[] {
  const missing = torchMissing();
  if (missing != null) {
    skipped.push(
      `PyTorch reference: ${missing}; install it with \`apt-get install -y python3-torch libopenblas0\`. ` +
        "The torch columns and the ratios are left out.",
    );
    return [];
  }
  return threads.map((t) => ({
    id: `torch-${t}`,
    kind: "torch" as const,
    backend: "pytorch",
    threads: t,
    cores: t,
    workers: 1,
    copies: 1,
    ...full,
  }));
}

/** The model, the machine and its physical limit (returned), and the skipped columns. */
function printHeader(
  cfg: DiffusionConfig,
  cost: ModelCost,
  improverCost: ModelCost,
  skipped: readonly string[],
): ReturnType<typeof cpuPeak> {
  console.log(
    `idpo bench: preset shapes16 (S=${cfg.unet.imageSize}), ${cost.unetParams + cost.textParams} weights`,
  );
  console.log(
    `  analytic FLOPs: UNet forward ${(cost.unetFlops / 1e6).toFixed(1)} MFLOP/image ` +
      `(improver ${(improverCost.unetFlops / 1e6).toFixed(1)}), text encoder ${(cost.textFlops / 1e6).toFixed(2)} MFLOP/prompt`,
  );
  console.log(
    `  machine: ${cpus().length}× ${cpus()[0]?.model ?? "cpu"}, node ${process.version}, load ${loadavg()
      .map((l) => l.toFixed(2))
      .join(" ")}`,
  );
  const peak = cpuPeak();
  console.log(`  physical limit: ${peak.explanation}`);
  for (const s of skipped) console.log(`  skipped ${s}`);
  return peak;
}

/** A tfjs column (bench/measure.ts) or an ONNX Runtime column (bench/measure-onnx.ts) in its own process. */
function runTfjsOrOnnx(col: Column, opts: BenchOptions): Promise<BackendResult> {
  if (col.kind === "onnx") {
    const args = ["--import", "tsx", join(here, "measure-onnx.ts"), "--threads", String(col.threads)];
    args.push("--forward-batch", String(col.forwardBatch), "--sample-images", String(col.sampleImages));
    args.push("--min-seconds", String(opts.minSeconds));
    return runChild<BackendResult>(process.execPath, args, col.id);
  }
  const args = [
    "--import",
    "tsx",
    join(here, "measure.ts"),
    "--backend",
    col.backend,
    "--threads",
    String(col.threads),
    "--train-workers",
    String(col.workers),
    "--forward-batch",
    String(col.forwardBatch),
    "--sample-images",
    String(col.sampleImages),
    "--train-pairs",
    String(col.trainPairs),
    "--train-images",
    String(col.trainImages),
    "--min-seconds",
    String(opts.minSeconds),
  ];
  if (opts.profile && col.backend === "wasm" && col.copies === 1) args.push("--profile");
  if (col.copies === 1) return runChild<BackendResult>(process.execPath, args, col.id);
  const copies = Array.from({ length: col.copies }, (_, i) =>
    runChild<BackendResult>(process.execPath, args, `${col.id} copy ${i + 1}`),
  );
  return Promise.all(copies).then(summedCopies);
}

/** What bench/torch_unet.py reads: the architecture, its analytic cost and the column's sizes. */
function torchSpec(
  col: Column,
  opts: BenchOptions,
  cfg: DiffusionConfig,
  cost: ModelCost,
  improverCost: ModelCost,
) {
  return {
    unet: cfg.unet,
    text: { ...cfg.text, vocab: undefined, vocabSize: cfg.text.vocab.length },
    params: { unet: cost.unetParams, text: cost.textParams },
    flops: {
      unetForwardPerImage: cost.unetFlops,
      improverUnetForwardPerImage: improverCost.unetFlops,
      textForwardPerPrompt: cost.textFlops,
    },
    threads: col.threads,
    forwardBatch: col.forwardBatch,
    sampleImages: col.sampleImages,
    trainPairs: col.trainPairs,
    trainImages: col.trainImages,
    minSeconds: opts.minSeconds,
  };
}

/** A PyTorch column: bench/torch_unet.py on a spec file. */
function runTorch(col: Column, spec: object, specPath: string): Promise<BackendResult> {
  writeFileSync(specPath, JSON.stringify(spec));
  return runChild<BackendResult>(PYTHON, [join(here, "torch_unet.py"), specPath], col.id);
}

const LABEL_WIDTH = 34;
const CELL_WIDTH = 19;

/** One row per metric, a value and GFLOP/s per column, then ours/PyTorch at equal threads. */
function printTable(results: Map<string, BackendResult>, selected: readonly Column[]): void {
  const ids = [...results.keys()];
  const coresOf = new Map(selected.map((c) => [c.id, c.cores]));
  const ratioPairs: [string, string][] = [];
  for (const id of ids) {
    const r = results.get(id);
    if (r == null || r.backend === "pytorch") continue;
    const torch = `torch-${coresOf.get(id)}`;
    if (results.has(torch)) ratioPairs.push([id, torch]);
  }
  const w0 = LABEL_WIDTH;
  const w = CELL_WIDTH;
  console.log("");
  console.log(pad("wall clock", w0) + ids.map((id) => pad(`${id} (GFLOP/s)`, w, true)).join(""));
  for (const m of METRICS) {
    const cells = ids.map((id) => {
      const x: Measurement | undefined = results.get(id)![m.key];
      return pad(x == null ? "-" : `${fmt(x.perSecond)} (${fmt(x.gflops, 1)})`, w, true);
    });
    console.log(pad(`${m.label} ${m.unit}`, w0) + cells.join(""));
  }
  if (ratioPairs.length > 0) printRatios(results, ratioPairs);
}

/**
 * Wall-clock ratios are the figure of merit on an idle machine. On a busy one each process gets an
 * unknown share of the cores, so the ratio of work per CPU-second is shown too (for one thread it
 * estimates the idle ratio; for two it also charges each side for threads that spin or wait).
 */
function printRatios(results: Map<string, BackendResult>, ratioPairs: readonly [string, string][]): void {
  const w0 = LABEL_WIDTH;
  const w = CELL_WIDTH;
  const ratioCell = (a: string, b: string, m: Metric, cpuTime: boolean) => {
    const ours = results.get(a)![m];
    const ref = results.get(b)![m];
    if (ours == null || ref == null) return pad("-", w, true);
    const ratio = cpuTime
      ? ours.unitsPerCall / ours.cpuSecondsPerCall / (ref.unitsPerCall / ref.cpuSecondsPerCall)
      : ours.perSecond / ref.perSecond;
    const target = TARGETS[m];
    const mark = target == null ? "" : ratio >= target ? " ok" : ` <${target}`;
    return pad(`${ratio.toFixed(2)}×${mark}`, w, true);
  };
  console.log("");
  console.log(
    pad("ours / PyTorch", w0) +
      ratioPairs.map(([a, b]) => pad(`${a}/${b}`, w, true)).join("") +
      ratioPairs
        .map(([a, b]) => pad(`cpu-time ${a.replace("wasm-", "w")}/${b.replace("torch-", "t")}`, w, true))
        .join(""),
  );
  for (const m of METRICS) {
    console.log(
      pad(`${m.label}`, w0) +
        ratioPairs.map(([a, b]) => ratioCell(a, b, m.key, false)).join("") +
        ratioPairs.map(([a, b]) => ratioCell(a, b, m.key, true)).join(""),
    );
  }
}

/** The sizes and targets, the inference sidecar's figures and the load during the runs. */
function printFooter(results: Map<string, BackendResult>): void {
  console.log("");
  console.log(
    "  sizes: forward batch 32, sampling/improver 32 images, DPO 16 pairs and ε-MSE 32 images per step " +
      "(cpu: 4, 2, 1, 2); DPO FLOPs = 2 images × (3 policy + 1 reference forwards) per pair, ε-MSE 3 forwards per image",
  );
  console.log(
    `  targets (ours/PyTorch, same threads): training ≥ ${TARGETS.training}×, sampling ≥ ${TARGETS.sampling}×`,
  );
  printOnnx(results);
  const loads = [...results.values()].flatMap((r) => [r.loadBefore[0], r.loadAfter[0]]);
  console.log(
    `  1-min load average during the runs: ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)} ` +
      `on ${cpus().length} cores${Math.max(...loads) > cpus().length ? " (busy: wall-clock figures are depressed and noisy)" : ""}`,
  );
}

function printProfiles(results: Map<string, BackendResult>): void {
  for (const [id, r] of results) {
    if (r.profile == null) continue;
    for (const [what, kernels] of Object.entries(r.profile)) {
      const total = kernels.reduce((a: number, k: KernelTime) => a + k.ms, 0);
      console.log(`\n  ${id} profile, ${what} (top kernels, ms):`);
      for (const k of kernels.slice(0, 12)) {
        console.log(
          `    ${pad(k.name, 26)}${pad(k.ms.toFixed(1), 9, true)} ${pad(`${((100 * k.ms) / total).toFixed(0)}%`, 5, true)} ${k.calls} calls`,
        );
      }
    }
  }
}

/** The figures as JSON under bench/out/ (stamped, and as latest.json). */
function writeRecord(
  cost: ModelCost,
  improverCost: ModelCost,
  skipped: string[],
  results: Map<string, BackendResult>,
): void {
  const outDir = join(here, "out");
  mkdirSync(outDir, { recursive: true });
  const record = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    preset: "shapes16",
    cost,
    improverUnetFlops: improverCost.unetFlops,
    skipped,
    results: Object.fromEntries(results),
  };
  const stamp = record.date.replace(/[:.]/g, "-");
  writeFileSync(join(outDir, `bench-${stamp}.json`), `${JSON.stringify(record, null, 2)}\n`);
  writeFileSync(join(outDir, "latest.json"), `${JSON.stringify(record, null, 2)}\n`);
  console.log(`\n  figures written to bench/out/bench-${stamp}.json (and latest.json)`);
}

await main();
