import { setToken, token } from "./api.js";
import { disposeCharts } from "./charts.js";
import { h, replace } from "./dom.js";
import { createRunPage } from "./pages/create-run.js";
import { improverPage } from "./pages/improver-page.js";
import { runListPage } from "./pages/run-list.js";
import { runPage } from "./pages/run-page.js";

const app = document.getElementById("app")!;
let current: AbortController | undefined;

/** Shows the page the URL's hash names: #/ (runs), #/runs/<id>, #/new, #/improver. */
function route(): void {
  current?.abort();
  disposeCharts(app);
  const ac = new AbortController();
  current = ac;
  const path = location.hash.replace(/^#/, "").split("?")[0] || "/";
  const run = /^\/runs\/([a-z0-9-]{1,63})$/.exec(path);
  const page = run
    ? runPage(app, ac.signal, run[1])
    : path === "/new"
      ? createRunPage(app, ac.signal)
      : path === "/improver"
        ? improverPage(app, ac.signal)
        : path === "/"
          ? runListPage(app, ac.signal)
          : replace(app, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "runs")));
  void Promise.resolve(page).catch((err) => {
    if (!ac.signal.aborted) replace(app, h("p", { class: "error" }, String(err)));
  });
}

const tokenInput = document.getElementById("token") as HTMLInputElement;
tokenInput.value = token();
document.getElementById("token-form")!.addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken(tokenInput.value.trim());
  route();
});
window.addEventListener("hashchange", route);
route();
