import type { Run } from "@idpo/proto";
import { controller, describeError } from "../api.js";
import { h, replace } from "../dom.js";
import { filterRuns, formatDuration, runRow, type StateFilter } from "../shaping/run-row.js";

const FILTERS: StateFilter[] = ["all", "pending", "running", "succeeded", "failed", "cancelled"];
/** How often the list is refreshed (ListRuns has no stream). */
const REFRESH_MS = 2000;

/** Every run of the mesh, newest first, refreshed every two seconds; filter by state. */
export async function runListPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  const stateParam = new URLSearchParams(location.hash.split("?")[1] ?? "").get("state");
  let filter: StateFilter = FILTERS.includes(stateParam as StateFilter) ? (stateParam as StateFilter) : "all";
  const select = h(
    "select",
    {
      id: "state-filter",
      onchange: (ev) => {
        filter = (ev.target as HTMLSelectElement).value as StateFilter;
        render();
      },
    },
    FILTERS.map((f) => h("option", { value: f, selected: f === filter }, f)),
  );
  const status = h("span", { class: "muted" });
  const body = h("tbody");
  replace(
    root,
    h("h1", {}, "Runs"),
    h(
      "div",
      { class: "toolbar" },
      h("label", {}, "state ", select),
      h("a", { href: "#/new" }, "new run"),
      status,
    ),
    h(
      "table",
      { id: "runs" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          ["run", "name", "state", "stage", "iteration", "progress", "started", "duration"].map((c) =>
            h("th", {}, c),
          ),
        ),
      ),
      body,
    ),
  );
  let runs: Run[] = [];
  const render = () => {
    const now = Date.now();
    const shown = filterRuns(runs, filter);
    replace(
      body,
      shown.length === 0
        ? h(
            "tr",
            {},
            h("td", { colspan: 8, class: "muted" }, runs.length === 0 ? "no runs yet" : `no ${filter} runs`),
          )
        : shown.map((run) => {
            const r = runRow(run, now);
            return h(
              "tr",
              { "data-run": r.runId },
              h("td", {}, h("a", { href: `#/runs/${r.runId}` }, r.runId)),
              h("td", {}, r.name),
              h("td", {}, h("span", { class: `state ${r.state}` }, r.state)),
              h("td", {}, r.stage),
              h("td", {}, r.iteration),
              h(
                "td",
                {},
                r.progress === undefined
                  ? ""
                  : h(
                      "span",
                      { class: "bar", title: `${Math.round(r.progress * 100)}%` },
                      h("span", { style: `width:${(r.progress * 100).toFixed(1)}%` }),
                    ),
              ),
              h("td", {}, r.startedMs ? new Date(r.startedMs).toLocaleString() : ""),
              h("td", {}, formatDuration(r.durationSeconds)),
            );
          }),
    );
  };
  while (!signal.aborted) {
    try {
      const all: Run[] = [];
      let pageToken = "";
      do {
        const res = await controller.listRuns({ pageSize: 200, pageToken }, { signal });
        all.push(...res.runs);
        pageToken = res.nextPageToken;
      } while (pageToken !== "" && all.length < 1000);
      runs = all;
      status.textContent = `${runs.length} runs · updated ${new Date().toLocaleTimeString()}`;
      status.className = "muted";
      render();
    } catch (err) {
      if (signal.aborted) return;
      status.textContent = describeError(err);
      status.className = "error";
    }
    await new Promise((r) => setTimeout(r, REFRESH_MS));
  }
}
