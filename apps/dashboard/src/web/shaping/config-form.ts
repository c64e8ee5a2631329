/** A run-creation form's field: its input name is the RunConfig field path it fills. */
export interface FormField {
  /** RunConfig path in proto (snake_case) form, e.g. "policy_training.steps": also how errors name it. */
  path: string;
  /** Label shown. */
  label: string;
  /** Parsed as an integer, a real number, text, a list of lines, or a RunMethod name. */
  kind: "int" | "float" | "text" | "lines" | "method";
  /** Initial value. */
  initial: string;
}

/** The fields of the create-run form; the defaults are a tiny run that finishes in minutes on a CPU. */
export const RUN_FORM_FIELDS: readonly FormField[] = [
  { path: "name", label: "name", kind: "text", initial: "" },
  { path: "method", label: "method", kind: "method", initial: "RUN_METHOD_ITERATIVE_DPO" },
  { path: "dataset", label: "dataset URI", kind: "text", initial: "shapes://?pairs=256&size=16&seed=1" },
  { path: "model_preset", label: "model preset", kind: "text", initial: "tiny" },
  { path: "iterations", label: "iterations K", kind: "int", initial: "2" },
  { path: "pairs_per_iteration", label: "online pairs per iteration", kind: "int", initial: "32" },
  { path: "shard_size", label: "pairs per shard", kind: "int", initial: "16" },
  { path: "sampling_steps", label: "sampling steps", kind: "int", initial: "10" },
  { path: "eval_samples_per_prompt", label: "evaluation samples per prompt", kind: "int", initial: "4" },
  { path: "base_training.steps", label: "base model steps", kind: "int", initial: "200" },
  { path: "improver_training.steps", label: "improver steps", kind: "int", initial: "100" },
  { path: "policy_training.steps", label: "policy steps per iteration", kind: "int", initial: "20" },
  { path: "policy_training.learning_rate", label: "policy learning rate", kind: "float", initial: "" },
  { path: "policy_training.beta", label: "DPO β", kind: "float", initial: "" },
  { path: "improve_strength", label: "improve strength (0, 1]", kind: "float", initial: "" },
  {
    path: "offline_pairs_per_iteration",
    label: "offline pairs mixed into each iteration",
    kind: "int",
    initial: "",
  },
  {
    path: "eval_prompts",
    label: "evaluation prompts (one per line; empty: held-out shapes prompts)",
    kind: "lines",
    initial: "",
  },
  { path: "seed", label: "seed", kind: "int", initial: "1" },
];

/** What a form produced: the RunConfig as protobuf JSON, or the fields that do not parse. */
export interface ParsedForm {
  /** RunConfig in the proto3 JSON form (fromJson accepts it); empty fields are left out (defaults apply). */
  json: Record<string, unknown>;
  /** Field path → why its text is not a value of its kind. */
  errors: Record<string, string>;
}

function camel(name: string): string {
  return name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Turns the form's texts into RunConfig JSON. Only the syntax of each field is checked here (an integer is
 * an integer); what values are allowed is the CreateRun contract, which the controller checks (the form asks
 * it with validate_only and shows its message on the field it names).
 */
export function parseRunForm(values: Readonly<Record<string, string>>, fields = RUN_FORM_FIELDS): ParsedForm {
  const json: Record<string, unknown> = {};
  const errors: Record<string, string> = {};
  for (const f of fields) {
    const text = (values[f.path] ?? "").trim();
    if (text === "") continue;
    let value: unknown;
    if (f.kind === "int") {
      if (!/^\d+$/.test(text)) {
        errors[f.path] = `"${text}" is not a non-negative integer`;
        continue;
      }
      value = f.path === "seed" ? text : Number(text);
    } else if (f.kind === "float") {
      const n = Number(text);
      if (!Number.isFinite(n)) {
        errors[f.path] = `"${text}" is not a number`;
        continue;
      }
      value = n;
    } else if (f.kind === "lines") {
      value = text
        .split("\n")
        .map((l) => l.trim())
        .filter((l) => l !== "");
    } else {
      value = text;
    }
    const parts = f.path.split(".").map(camel);
    let target = json;
    for (const p of parts.slice(0, -1)) {
      target[p] ??= {};
      target = target[p] as Record<string, unknown>;
    }
    target[parts[parts.length - 1]] = value;
  }
  return { json, errors };
}

/**
 * The form field an INVALID_ARGUMENT message of CreateRun names ("config.policy_training.steps: …" →
 * "policy_training.steps"), or undefined when it names none of `fields` (then it is shown for the whole form).
 */
export function fieldOfError(message: string, fields = RUN_FORM_FIELDS): string | undefined {
  const m = /(?:^|\s)config\.([a-z_.0-9]+?)(?:\[\d+\])?:/.exec(message);
  if (!m) return undefined;
  let path = m[1];
  while (path !== "") {
    if (fields.some((f) => f.path === path)) return path;
    path = path.includes(".") ? path.slice(0, path.lastIndexOf(".")) : "";
  }
  return undefined;
}
