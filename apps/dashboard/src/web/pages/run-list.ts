import type { Run } from "@idpo/proto";
import { controller, describeError } from "../api.js";
import { h, replace } from "../dom.js";
import { filterRuns, formatDuration, type RunRow, runRow, type StateFilter } from "../shaping/run-row.js";

const FILTERS: StateFilter[] = ["all", "pending", "running", "succeeded", "failed", "cancelled"];
/** How often the list is refreshed (ListRuns has no stream). */
const REFRESH_MS = 2000;

/** The table row of each run shown, with the key of what each of its cells shows. */
type RowEls = Map<string, { tr: HTMLTableRowElement; keys: string[] }>;

/** Every run of the mesh, newest first, refreshed every two seconds; filter by state. */
export async function runListPage(root: HTMLElement, signal: AbortSignal): Promise<void> {
  const stateParam = new URLSearchParams(location.hash.split("?")[1] ?? "").get("state");
  let filter: StateFilter = FILTERS.includes(stateParam as StateFilter) ? (stateParam as StateFilter) : "all";
  let runs: Run[] = [];
  // Rows are kept per run and only their changed cells rewritten, so a row (and its link) stays the same
  // element between refreshes while its progress and duration tick.
  const rowEls: RowEls = new Map();
  const render = () => renderRuns(body, rowEls, runs, filter);
  const { status, body } = runListView(root, filter, (f) => {
    filter = f;
    render();
  });
  while (!signal.aborted) {
    try {
      runs = await listAllRuns(signal);
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

/** Up to about a thousand runs, newest first, read page by page. */
async function listAllRuns(signal: AbortSignal): Promise<Run[]> {
  const all: Run[] = [];
  let pageToken = "";
  do {
    const res = await controller.listRuns({ pageSize: 200, pageToken }, { signal });
    all.push(...res.runs);
    pageToken = res.nextPageToken;
  } while (pageToken !== "" && all.length < 1000);
  return all;
}

/** Lays the page out in `root`: the state filter (`onFilter` sees its changes), the status and the table. */
function runListView(
  root: HTMLElement,
  filter: StateFilter,
  onFilter: (filter: StateFilter) => void,
): { status: HTMLSpanElement; body: HTMLTableSectionElement } {
  const select = h(
    "select",
    { id: "state-filter", onchange: (ev) => onFilter((ev.target as HTMLSelectElement).value as StateFilter) },
    FILTERS.map((f) => h("option", { value: f, selected: f === filter }, f)),
  );
  const status = h("span", { class: "muted" });
  const body = h("tbody");
  const columns = ["run", "name", "state", "stage", "iteration", "progress", "started", "duration"];
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
          columns.map((c) => h("th", {}, c)),
        ),
      ),
      body,
    ),
  );
  return { status, body };
}

/** The cells of a run's row: what each shows (its key) and how to draw it. */
function cellsOf(r: RunRow): { key: string; node: () => Node | string }[] {
  return [
    { key: r.runId, node: () => h("a", { href: `#/runs/${r.runId}` }, r.runId) },
    { key: r.name, node: () => r.name },
    { key: r.state, node: () => h("span", { class: `state ${r.state}` }, r.state) },
    { key: r.stage, node: () => r.stage },
    { key: r.iteration, node: () => r.iteration },
    {
      key: r.progress === undefined ? "" : r.progress.toFixed(3),
      node: () =>
        r.progress === undefined
          ? ""
          : h(
              "span",
              { class: "bar", title: `${Math.round(r.progress * 100)}%` },
              h("span", { style: `width:${(r.progress * 100).toFixed(1)}%` }),
            ),
    },
    { key: String(r.startedMs), node: () => (r.startedMs ? new Date(r.startedMs).toLocaleString() : "") },
    { key: formatDuration(r.durationSeconds), node: () => formatDuration(r.durationSeconds) },
  ];
}

/** Shows the runs the filter lets through in `body`, reusing each run's row and redrawing changed cells. */
function renderRuns(body: HTMLTableSectionElement, rowEls: RowEls, runs: Run[], filter: StateFilter): void {
  const now = Date.now();
  const shown = filterRuns(runs, filter).map((run) => runRow(run, now));
  if (shown.length === 0) {
    rowEls.clear();
    replace(
      body,
      h(
        "tr",
        {},
        h("td", { colspan: 8, class: "muted" }, runs.length === 0 ? "no runs yet" : `no ${filter} runs`),
      ),
    );
    return;
  }
  const trs = shown.map((r) => updatedRow(rowEls, r));
  const seen = new Set(shown.map((r) => r.runId));
  for (const id of [...rowEls.keys()]) if (!seen.has(id)) rowEls.delete(id);
  const same = trs.length === body.children.length && trs.every((tr, i) => body.children[i] === tr);
  if (!same) body.replaceChildren(...trs);
}

/** A run's row, made on its first showing, with the cells whose key changed drawn again. */
function updatedRow(rowEls: RowEls, r: RunRow): HTMLTableRowElement {
  const cells = cellsOf(r);
  let el = rowEls.get(r.runId);
  if (!el) {
    el = {
      tr: h(
        "tr",
        { "data-run": r.runId },
        cells.map(() => h("td")),
      ),
      keys: cells.map(() => "\u0000"),
    };
    rowEls.set(r.runId, el);
  }
  for (const [i, c] of cells.entries()) {
    if (el.keys[i] === c.key) continue;
    el.keys[i] = c.key;
    replace(el.tr.children[i], c.node());
  }
  return el.tr;
}
