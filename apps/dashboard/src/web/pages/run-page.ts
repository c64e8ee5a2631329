import { toJsonString } from "@bufbuild/protobuf";
import {
  type EvaluationSample,
  type ImagePair,
  type Job,
  JobKind,
  JobState,
  type Run,
  RunConfigSchema,
  RunStage,
  RunState,
} from "@idpo/proto";
import { controller, describeError, trainer } from "../api.js";
import { disposeCharts, drawCurveChart, drawRewardChart } from "../charts.js";
import { h, pngImage, replace } from "../dom.js";
import { jobCurves } from "../shaping/job-curves.js";
import { rewardSeries } from "../shaping/reward-series.js";
import { enumName, formatDuration, isEnded, runRow } from "../shaping/run-row.js";
import { sampleGrid } from "../shaping/sample-grid.js";
import { timeline } from "../shaping/timeline.js";

/** Pairs shown per iteration, and samples per model. */
const PAIRS_SHOWN = 12;
const SAMPLES_SHOWN = 24;
/** Least time between two refreshes of the jobs and images (they are heavier than the run). */
const SLOW_REFRESH_MS = 3000;

function pngOf(
  img: { data: { case: string | undefined; value?: unknown } } | undefined,
): Uint8Array | undefined {
  return img?.data.case === "png" ? (img.data.value as Uint8Array) : undefined;
}

function jobLabel(job: Job): string {
  const kind = enumName(JobKind, job.spec?.kind ?? 0);
  const k = job.spec?.iteration ?? 0;
  return k > 0 ? `iteration ${k} (${kind})` : kind === "pretrain" ? "base model (pretrain)" : `${kind}`;
}

/**
 * One run, live from WatchRun: state and progress, a timeline of its stages, the reward of every evaluated
 * model with CI bands, each training job's curves, the online pairs of each iteration and the same-seed
 * evaluation samples of each checkpoint side by side; cancel while it runs.
 */
export async function runPage(root: HTMLElement, signal: AbortSignal, runId: string): Promise<void> {
  const title = h("h1", {}, `Run ${runId}`);
  const cancel = h("button", { class: "danger", id: "cancel-run", disabled: true }, "cancel run");
  const status = h("div", { id: "run-status" });
  const message = h("div", { class: "error", id: "run-error" });
  const steps = h("ol", { class: "timeline", id: "timeline" });
  const reward = h("div", { class: "chart", id: "reward-chart" });
  const curves = h("div", { id: "curves" });
  const pairs = h("div", { id: "pairs", class: "images" });
  const samples = h("div", { id: "samples", class: "images" });
  const config = h("pre", { class: "config", id: "config" });
  replace(
    root,
    h("div", { class: "toolbar" }, title, cancel),
    status,
    message,
    h(
      "div",
      { class: "grid2" },
      h("section", { class: "card" }, h("h2", {}, "Timeline"), steps),
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Reward per iteration"),
        reward,
        h("p", { class: "muted", id: "reward-note" }),
      ),
    ),
    h("section", { class: "card" }, h("h2", {}, "Training curves"), curves),
    h(
      "section",
      { class: "card" },
      h("h2", {}, "Online pairs: loser (top) → improver's winner (bottom)"),
      pairs,
    ),
    h("section", { class: "card" }, h("h2", {}, "Same-seed samples of each checkpoint"), samples),
    h("section", { class: "card" }, h("h2", {}, "Config"), config),
  );

  let run: Run | undefined;
  cancel.addEventListener("click", async () => {
    cancel.disabled = true;
    try {
      run = (await controller.cancelRun({ runId }, { signal })).run;
      if (run) renderRun(run);
    } catch (err) {
      message.textContent = describeError(err);
    }
  });

  const renderRun = (r: Run) => {
    const row = runRow(r, Date.now());
    replace(
      title,
      `Run ${r.runId}${r.config?.name ? ` · ${r.config.name}` : ""} `,
      h("span", { class: `state ${row.state}`, id: "run-state" }, row.state),
    );
    cancel.disabled = isEnded(r.state);
    const eta = r.progress?.etaSeconds
      ? ` · about ${formatDuration(r.progress.etaSeconds)} left in this stage`
      : "";
    replace(
      status,
      h(
        "p",
        {},
        r.state === RunState.RUNNING ? `${enumName(RunStage, r.stage)}, iteration ${row.iteration} · ` : "",
        r.progress?.message ?? "",
        row.progress === undefined ? "" : " ",
        row.progress === undefined
          ? ""
          : h("span", { class: "bar" }, h("span", { style: `width:${(row.progress * 100).toFixed(1)}%` })),
        eta,
        ` · ${formatDuration(row.durationSeconds)} since it was created`,
      ),
    );
    message.textContent = r.error;
    replace(
      steps,
      timeline(r).map((s) =>
        h(
          "li",
          { class: s.status, "data-step": s.key },
          h("span", { class: "dot" }),
          h("span", {}, s.label),
          h("span", { class: "muted" }, s.detail),
        ),
      ),
    );
    const series = rewardSeries(r);
    drawRewardChart(reward, series);
    const note = document.getElementById("reward-note");
    if (note)
      note.textContent = `${r.config?.evalPrompts.length ?? 0} evaluation prompts × ${r.config?.evalSamplesPerPrompt ?? 0} samples, the same seeds for every model. Runs evaluate on these prompts only; the train prompts are not scored.`;
    config.textContent = r.config ? toJsonString(RunConfigSchema, r.config, { prettySpaces: 2 }) : "";
  };

  // ---- jobs and images: refreshed at most every few seconds -----------------------------------------
  const sampleCache = new Map<number, EvaluationSample[]>();
  const pairCache = new Map<number, { shardsDone: number; pairs: ImagePair[] }>();
  let lastSlow = 0;
  /** What the curves and image grids on the page show, so they are rebuilt only when that changes. */
  let jobsKey = "";
  let imagesKey = "";
  let slowTimer: ReturnType<typeof setTimeout> | undefined;
  let slowRunning = false;
  let again = false;

  const refreshJobs = async (r: Run) => {
    const jobs = (await trainer.listJobs({ runId: r.runId, pageSize: 200 }, { signal })).jobs;
    jobs.sort((a, b) => Number(a.createTime?.seconds ?? 0n) - Number(b.createTime?.seconds ?? 0n));
    const key = JSON.stringify(jobs.map((j) => [j.jobId, j.state, j.step, j.history.length]));
    if (key === jobsKey) return;
    jobsKey = key;
    disposeCharts(curves);
    const blocks = jobs
      .map((job) => ({ job, panels: jobCurves(job) }))
      .filter((b) => b.panels.length > 0)
      .map(({ job, panels }) => {
        const charts = panels.map(() => h("div", { class: "chart small" }));
        const block = h(
          "div",
          { "data-job": job.jobId },
          h(
            "h3",
            {},
            `${jobLabel(job)} · ${enumName(JobState, job.state)} · step ${job.step}/${job.totalSteps}`,
          ),
          h("div", { class: "curves" }, charts),
        );
        return { block, charts, panels };
      });
    replace(
      curves,
      blocks.length === 0
        ? h("p", { class: "muted" }, "no training job has reported yet")
        : blocks.map((b) => b.block),
    );
    for (const b of blocks) {
      for (let i = 0; i < b.panels.length; i++) drawCurveChart(b.charts[i], b.panels[i]);
    }
  };

  const refreshImages = async (r: Run) => {
    // Pairs: re-read while an iteration is still storing shards and fewer than PAIRS_SHOWN are shown.
    // Samples: an evaluated model's samples never change. All fetched at once.
    const pairFetches = r.iterations
      .filter((it) => {
        const cached = pairCache.get(it.index);
        if (cached && (cached.shardsDone === it.shardsDone || cached.pairs.length >= PAIRS_SHOWN))
          return false;
        return it.shardsDone > 0;
      })
      .map(async (it) => {
        const res = await controller.getIterationPairs(
          { runId: r.runId, iteration: it.index, maxPairs: PAIRS_SHOWN },
          { signal },
        );
        pairCache.set(it.index, { shardsDone: it.shardsDone, pairs: res.pairs });
      });
    const evaluated = [
      ...(r.baseEvaluation ? [0] : []),
      ...r.iterations.filter((it) => it.evaluation).map((it) => it.index),
    ];
    const sampleFetches = evaluated
      .filter((k) => !sampleCache.has(k))
      .map(async (k) => {
        const res = await controller.getEvaluationSamples(
          { runId: r.runId, iteration: k, maxSamples: SAMPLES_SHOWN },
          { signal },
        );
        if (res.samples.length > 0) sampleCache.set(k, res.samples);
      });
    await Promise.all([...pairFetches, ...sampleFetches]);
    const key = JSON.stringify([
      [...pairCache.entries()].map(([k, v]) => [k, v.pairs.length]),
      [...sampleCache.keys()],
    ]);
    if (key === imagesKey) return;
    imagesKey = key;
    const pairBlocks = [...pairCache.entries()]
      .sort((a, b) => a[0] - b[0])
      .filter(([, v]) => v.pairs.length > 0)
      .map(([k, v]) =>
        h(
          "div",
          { "data-iteration": k },
          h("h3", {}, `iteration ${k}`),
          h(
            "table",
            {},
            h(
              "tr",
              {},
              v.pairs.map((p) =>
                h("td", {}, pngImage(pngOf(p.loser) ?? new Uint8Array(), `loser: ${p.prompt}`)),
              ),
            ),
            h(
              "tr",
              {},
              v.pairs.map((p) =>
                h("td", {}, pngImage(pngOf(p.winner) ?? new Uint8Array(), `winner: ${p.prompt}`)),
              ),
            ),
          ),
        ),
      );
    replace(
      pairs,
      pairBlocks.length === 0 ? h("p", { class: "muted" }, "no online pairs stored yet") : pairBlocks,
    );
    const grid = sampleGrid(
      [...sampleCache.entries()]
        .sort((a, b) => a[0] - b[0])
        .map(([k, s]) => ({ label: k === 0 ? "base" : `iter ${k}`, samples: s })),
    );
    replace(
      samples,
      grid.rows.length === 0
        ? h("p", { class: "muted" }, "no model evaluated yet")
        : h(
            "table",
            { id: "sample-grid" },
            grid.rows.map((row) =>
              h(
                "tr",
                { "data-model": row.label },
                h("th", { class: "row" }, row.label),
                row.cells.map((c) =>
                  h(
                    "td",
                    {},
                    c ? pngImage(pngOf(c.image) ?? new Uint8Array(), `${c.prompt} (seed ${c.seed})`) : "",
                  ),
                ),
              ),
            ),
          ),
    );
  };

  const slowRefresh = () => {
    if (slowRunning) {
      again = true;
      return;
    }
    if (slowTimer) return;
    const wait = Math.max(0, lastSlow + SLOW_REFRESH_MS - Date.now());
    slowTimer = setTimeout(async () => {
      slowTimer = undefined;
      if (!run || signal.aborted) return;
      slowRunning = true;
      lastSlow = Date.now();
      try {
        await Promise.all([refreshJobs(run), refreshImages(run)]);
      } catch (err) {
        if (!signal.aborted) message.textContent = describeError(err);
      } finally {
        slowRunning = false;
        if (again) {
          again = false;
          slowRefresh();
        }
      }
    }, wait);
  };
  signal.addEventListener("abort", () => clearTimeout(slowTimer));

  // ---- the live part: WatchRun, re-opened if the stream breaks while the run goes on --------------------
  while (!signal.aborted) {
    try {
      for await (const res of controller.watchRun({ runId }, { signal })) {
        run = res.run;
        if (!run) continue;
        renderRun(run);
        slowRefresh();
      }
      if (run && isEnded(run.state)) {
        // One last refresh so the final job curves and images show.
        lastSlow = 0;
        slowRefresh();
        return;
      }
    } catch (err) {
      if (signal.aborted) return;
      message.textContent = describeError(err);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
