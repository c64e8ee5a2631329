import { fromJson } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { type RunConfig, RunConfigSchema, RunMethod } from "@idpo/proto";
import { controller, describeError } from "../api.js";
import { h, replace } from "../dom.js";
import { type FormField, fieldOfError, parseRunForm, RUN_FORM_FIELDS } from "../shaping/config-form.js";

const METHODS = [RunMethod.ITERATIVE_DPO, RunMethod.SPIN, RunMethod.DPO_OFFLINE, RunMethod.SFT].map(
  (m) => `RUN_METHOD_${RunMethod[m]}`,
);

type FieldInput = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** The run-creation form's elements: an input and an error line per field (the run id's under "run_id"). */
interface RunForm {
  form: HTMLFormElement;
  runId: HTMLInputElement;
  inputs: Map<string, FieldInput>;
  errors: Map<string, HTMLElement>;
  submit: HTMLButtonElement;
  formError: HTMLParagraphElement;
  verdict: HTMLParagraphElement;
}

/**
 * A run-creation form. Every change asks the controller to validate the config (CreateRun with
 * validate_only), so the form applies exactly the CreateRun contract and shows its message on the field it
 * names; "create" then creates the run and opens its page.
 */
export function createRunPage(root: HTMLElement, signal: AbortSignal): void {
  const f = runForm();
  replace(root, h("h1", {}, "New run"), f.form, f.verdict, f.formError);

  let seq = 0;
  const validate = async () => {
    const mine = ++seq;
    clearErrors(f);
    const config = currentConfig(f);
    if (!config) {
      f.verdict.textContent = "";
      f.submit.disabled = true;
      return;
    }
    try {
      await controller.createRun({ runId: f.runId.value.trim(), config, validateOnly: true }, { signal });
      if (mine !== seq) return;
      f.verdict.textContent = "the controller accepts this config";
      f.submit.disabled = false;
    } catch (err) {
      if (mine !== seq || signal.aborted) return;
      f.verdict.textContent = "";
      f.submit.disabled = true;
      showError(f, err);
    }
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  f.form.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => void validate(), 300);
  });
  f.form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(f);
    const config = currentConfig(f);
    if (!config) return;
    f.submit.disabled = true;
    try {
      const res = await controller.createRun({ runId: f.runId.value.trim(), config }, { signal });
      location.hash = `#/runs/${res.run!.runId}`;
    } catch (err) {
      f.submit.disabled = false;
      showError(f, err);
    }
  });
  void validate();
}

/** The form: the run id, then a label, an input and an error line for each of RUN_FORM_FIELDS, then "create". */
function runForm(): RunForm {
  const f: RunForm = {
    form: h("form", { class: "run-form", id: "run-form" }),
    runId: h("input", { name: "run_id", id: "f-run_id", placeholder: "generated when empty", size: 40 }),
    inputs: new Map(),
    errors: new Map(),
    submit: h("button", { type: "submit", id: "create-run" }, "create run"),
    formError: h("p", { class: "error", id: "form-error" }),
    verdict: h("p", { class: "muted", id: "form-verdict" }),
  };
  f.form.append(
    h("label", { for: "f-run_id" }, "run id"),
    f.runId,
    h("span", { class: "field-error", id: "e-run_id" }),
  );
  f.errors.set("run_id", f.form.lastElementChild as HTMLElement);
  for (const field of RUN_FORM_FIELDS) {
    const input = fieldInput(field);
    const err = h("span", { class: "field-error", id: `e-${field.path}` });
    f.inputs.set(field.path, input);
    f.errors.set(field.path, err);
    f.form.append(h("label", { for: input.id }, field.label), input, err);
  }
  f.form.append(h("span"), h("div", {}, f.submit), h("span"));
  return f;
}

/** A field's input: a select of the methods, a textarea for lines, else a text input; set to its initial value. */
function fieldInput(field: FormField): FieldInput {
  const id = `f-${field.path}`;
  const input =
    field.kind === "method"
      ? h(
          "select",
          { name: field.path, id },
          METHODS.map((m) =>
            h(
              "option",
              { value: m, selected: m === field.initial },
              m.replace("RUN_METHOD_", "").toLowerCase(),
            ),
          ),
        )
      : field.kind === "lines"
        ? h("textarea", { name: field.path, id, rows: 3, cols: 44 })
        : h("input", { name: field.path, id, value: field.initial, size: 40 });
  if (input instanceof HTMLTextAreaElement) input.value = field.initial;
  return input;
}

function clearErrors(f: RunForm): void {
  for (const e of f.errors.values()) e.textContent = "";
  f.formError.textContent = "";
}

/** The config to send, or undefined when a field does not parse (the field says why). */
function currentConfig(f: RunForm): RunConfig | undefined {
  const values: Record<string, string> = {};
  for (const [path, input] of f.inputs) values[path] = input.value;
  const parsed = parseRunForm(values);
  for (const [path, why] of Object.entries(parsed.errors)) f.errors.get(path)!.textContent = why;
  if (Object.keys(parsed.errors).length > 0) return undefined;
  return fromJson(RunConfigSchema, parsed.json as never);
}

/** Shows an error on the field it names, else under the form. */
function showError(f: RunForm, err: unknown): void {
  const text = describeError(err);
  const field = err instanceof ConnectError ? fieldOfError(err.rawMessage) : undefined;
  const target = field
    ? f.errors.get(field)
    : /^run_id:/.test(ConnectError.from(err).rawMessage)
      ? f.errors.get("run_id")
      : undefined;
  if (target) target.textContent = ConnectError.from(err).rawMessage;
  else f.formError.textContent = text;
}
