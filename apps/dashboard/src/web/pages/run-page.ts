import { toJsonString } from "@bufbuild/protobuf";
import {
  type Job,
  JobKind,
  JobState,
  type Run,
  RunConfigSchema,
  RunStage,
  RunState,
  runStateEnded,
} from "@idpo/proto";
import { controller, describeError, trainer } from "../api.js";
import { disposeCharts, drawCurveChart, drawRewardChart } from "../charts.js";
import { h, replace } from "../dom.js";
import { jobCurves } from "../shaping/job-curves.js";
import { rewardSeries } from "../shaping/reward-series.js";
import { enumName, formatDuration, type RunRow, runRow } from "../shaping/run-row.js";
import { timeline } from "../shaping/timeline.js";
import { runImages } from "./run-images.js";

/** Least time between two refreshes of the jobs and images (they are heavier than the run). */
const SLOW_REFRESH_MS = 3000;

/** The elements of the run page that follow the run. */
interface RunView {
  title: HTMLHeadingElement;
  cancel: HTMLButtonElement;
  status: HTMLDivElement;
  message: HTMLDivElement;
  steps: HTMLOListElement;
  reward: HTMLDivElement;
  curves: HTMLDivElement;
  pairs: HTMLDivElement;
  samples: HTMLDivElement;
  config: HTMLPreElement;
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
  const view = runView(root, runId);
  let run: Run | undefined;
  view.cancel.addEventListener("click", async () => {
    view.cancel.disabled = true;
    try {
      run = (await controller.cancelRun({ runId }, { signal })).run;
      if (run) renderRun(view, run);
    } catch (err) {
      view.message.textContent = describeError(err);
    }
  });

  // Jobs and images: refreshed at most every few seconds.
  const refreshJobs = jobCurvesOf(view.curves, signal);
  const refreshImages = runImages(view.pairs, view.samples, signal);
  const slow = slowRefresher(
    signal,
    () => run,
    async (r) => {
      try {
        await Promise.all([refreshJobs(r), refreshImages(r)]);
      } catch (err) {
        if (!signal.aborted) view.message.textContent = describeError(err);
      }
    },
  );

  // The live part: WatchRun, re-opened if the stream breaks while the run goes on.
  while (!signal.aborted) {
    try {
      for await (const res of controller.watchRun({ runId }, { signal })) {
        run = res.run;
        if (!run) continue;
        renderRun(view, run);
        slow.request();
      }
      if (run && runStateEnded(run.state)) {
        // One last refresh so the final job curves and images show.
        slow.requestNow();
        return;
      }
    } catch (err) {
      if (signal.aborted) return;
      view.message.textContent = describeError(err);
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}

/**
 * Runs `refresh` on the run `current()` gives at most every SLOW_REFRESH_MS and one at a time: a request
 * while one runs makes one more after it. `requestNow` skips the wait (the run's final refresh).
 */
function slowRefresher(
  signal: AbortSignal,
  current: () => Run | undefined,
  refresh: (r: Run) => Promise<void>,
): { request: () => void; requestNow: () => void } {
  let last = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let running = false;
  let again = false;
  const request = () => {
    if (running) {
      again = true;
      return;
    }
    if (timer) return;
    const wait = Math.max(0, last + SLOW_REFRESH_MS - Date.now());
    timer = setTimeout(async () => {
      timer = undefined;
      const r = current();
      if (!r || signal.aborted) return;
      running = true;
      last = Date.now();
      try {
        await refresh(r);
      } finally {
        running = false;
        if (again) {
          again = false;
          request();
        }
      }
    }, wait);
  };
  signal.addEventListener("abort", () => clearTimeout(timer));
  const requestNow = () => {
    last = 0;
    request();
  };
  return { request, requestNow };
}

/** Lays the run page out in `root`: the toolbar, status, timeline and reward, curves, pairs, samples, config. */
function runView(root: HTMLElement, runId: string): RunView {
  const view: RunView = {
    title: h("h1", {}, `Run ${runId}`),
    cancel: h("button", { class: "danger", id: "cancel-run", disabled: true }, "cancel run"),
    status: h("div", { id: "run-status" }),
    message: h("div", { class: "error", id: "run-error" }),
    steps: h("ol", { class: "timeline", id: "timeline" }),
    reward: h("div", { class: "chart", id: "reward-chart" }),
    curves: h("div", { id: "curves" }),
    pairs: h("div", { id: "pairs", class: "images" }),
    samples: h("div", { id: "samples", class: "images" }),
    config: h("pre", { class: "config", id: "config" }),
  };
  const card = (heading: string, ...body: Node[]) =>
    h("section", { class: "card" }, h("h2", {}, heading), body);
  replace(
    root,
    h("div", { class: "toolbar" }, view.title, view.cancel),
    view.status,
    view.message,
    h(
      "div",
      { class: "grid2" },
      card("Timeline", view.steps),
      card("Reward per iteration", view.reward, h("p", { class: "muted", id: "reward-note" })),
    ),
    card("Training curves", view.curves),
    card("Online pairs: loser (top) → improver's winner (bottom)", view.pairs),
    card("Same-seed samples of each checkpoint", view.samples),
    card("Config", view.config),
  );
  return view;
}

/** Shows a run: its heading, status line, timeline, reward chart and config. */
function renderRun(view: RunView, r: Run): void {
  const row = runRow(r, Date.now());
  replace(
    view.title,
    `Run ${r.runId}${r.config?.name ? ` · ${r.config.name}` : ""} `,
    h("span", { class: `state ${row.state}`, id: "run-state" }, row.state),
  );
  view.cancel.disabled = runStateEnded(r.state);
  renderStatus(view.status, r, row);
  view.message.textContent = r.error;
  replace(
    view.steps,
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
  drawRewardChart(view.reward, rewardSeries(r));
  const note = document.getElementById("reward-note");
  if (note)
    note.textContent = `${r.config?.evalPrompts.length ?? 0} evaluation prompts × ${r.config?.evalSamplesPerPrompt ?? 0} samples, the same seeds for every model. Runs evaluate on these prompts only; the train prompts are not scored.`;
  view.config.textContent = r.config ? toJsonString(RunConfigSchema, r.config, { prettySpaces: 2 }) : "";
}

/** The status line: stage and iteration, the progress message and bar, the ETA and the run's age. */
function renderStatus(status: HTMLElement, r: Run, row: RunRow): void {
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
}

/**
 * The run page's training curves: a block of charts per job that has reported. The returned refresh
 * rebuilds the blocks only when a job's state, step or history length changed.
 */
function jobCurvesOf(curves: HTMLElement, signal: AbortSignal): (r: Run) => Promise<void> {
  let shownKey = "";
  return async (r: Run) => {
    const jobs = (await trainer.listJobs({ runId: r.runId, pageSize: 200 }, { signal })).jobs;
    jobs.sort((a, b) => Number(a.createTime?.seconds ?? 0n) - Number(b.createTime?.seconds ?? 0n));
    const key = JSON.stringify(jobs.map((j) => [j.jobId, j.state, j.step, j.history.length]));
    if (key === shownKey) return;
    shownKey = key;
    disposeCharts(curves);
    const blocks = jobBlocks(jobs);
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
}

/** A heading and an empty chart per curve panel for each job with curves (drawn once in the page). */
function jobBlocks(jobs: Job[]) {
  return jobs
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
}
