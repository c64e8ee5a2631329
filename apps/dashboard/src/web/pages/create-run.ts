import { fromJson } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { type RunConfig, RunConfigSchema, RunMethod } from "@idpo/proto";
import { controller, describeError } from "../api.js";
import { h, replace } from "../dom.js";
import { fieldOfError, parseRunForm, RUN_FORM_FIELDS } from "../shaping/config-form.js";

const METHODS = [RunMethod.ITERATIVE_DPO, RunMethod.SPIN, RunMethod.DPO_OFFLINE, RunMethod.SFT].map(
  (m) => `RUN_METHOD_${RunMethod[m]}`,
);

/**
 * A run-creation form. Every change asks the controller to validate the config (CreateRun with
 * validate_only), so the form applies exactly the CreateRun contract and shows its message on the field it
 * names; "create" then creates the run and opens its page.
 */
export function createRunPage(root: HTMLElement, signal: AbortSignal): void {
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>();
  const errors = new Map<string, HTMLElement>();
  const runId = h("input", { name: "run_id", id: "f-run_id", placeholder: "generated when empty", size: 40 });
  const formError = h("p", { class: "error", id: "form-error" });
  const verdict = h("p", { class: "muted", id: "form-verdict" });
  const submit = h("button", { type: "submit", id: "create-run" }, "create run");
  const form = h("form", { class: "run-form", id: "run-form" });
  form.append(
    h("label", { for: "f-run_id" }, "run id"),
    runId,
    h("span", { class: "field-error", id: "e-run_id" }),
  );
  errors.set("run_id", form.lastElementChild as HTMLElement);
  for (const f of RUN_FORM_FIELDS) {
    const id = `f-${f.path}`;
    const input =
      f.kind === "method"
        ? h(
            "select",
            { name: f.path, id },
            METHODS.map((m) =>
              h(
                "option",
                { value: m, selected: m === f.initial },
                m.replace("RUN_METHOD_", "").toLowerCase(),
              ),
            ),
          )
        : f.kind === "lines"
          ? h("textarea", { name: f.path, id, rows: 3, cols: 44 })
          : h("input", { name: f.path, id, value: f.initial, size: 40 });
    if (input instanceof HTMLTextAreaElement) input.value = f.initial;
    const err = h("span", { class: "field-error", id: `e-${f.path}` });
    inputs.set(f.path, input);
    errors.set(f.path, err);
    form.append(h("label", { for: id }, f.label), input, err);
  }
  form.append(h("span"), h("div", {}, submit), h("span"));
  replace(root, h("h1", {}, "New run"), form, verdict, formError);

  const clearErrors = () => {
    for (const e of errors.values()) e.textContent = "";
    formError.textContent = "";
  };
  /** The config to send, or undefined when a field does not parse (the field says why). */
  const current = (): RunConfig | undefined => {
    const values: Record<string, string> = {};
    for (const [path, input] of inputs) values[path] = input.value;
    const parsed = parseRunForm(values);
    for (const [path, why] of Object.entries(parsed.errors)) errors.get(path)!.textContent = why;
    if (Object.keys(parsed.errors).length > 0) return undefined;
    return fromJson(RunConfigSchema, parsed.json as never);
  };
  const showError = (err: unknown) => {
    const text = describeError(err);
    const field = err instanceof ConnectError ? fieldOfError(err.rawMessage) : undefined;
    const target = field
      ? errors.get(field)
      : /^run_id:/.test(ConnectError.from(err).rawMessage)
        ? errors.get("run_id")
        : undefined;
    if (target) target.textContent = ConnectError.from(err).rawMessage;
    else formError.textContent = text;
  };

  let seq = 0;
  const validate = async () => {
    const mine = ++seq;
    clearErrors();
    const config = current();
    if (!config) {
      verdict.textContent = "";
      submit.disabled = true;
      return;
    }
    try {
      await controller.createRun({ runId: runId.value.trim(), config, validateOnly: true }, { signal });
      if (mine !== seq) return;
      verdict.textContent = "the controller accepts this config";
      submit.disabled = false;
    } catch (err) {
      if (mine !== seq || signal.aborted) return;
      verdict.textContent = "";
      submit.disabled = true;
      showError(err);
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => void validate(), 300);
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const config = current();
    if (!config) return;
    submit.disabled = true;
    try {
      const res = await controller.createRun({ runId: runId.value.trim(), config }, { signal });
      location.hash = `#/runs/${res.run!.runId}`;
    } catch (err) {
      submit.disabled = false;
      showError(err);
    }
  });
  void validate();
}
