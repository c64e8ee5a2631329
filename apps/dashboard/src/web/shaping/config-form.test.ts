import { fromJson } from "@bufbuild/protobuf";
import { RunConfigSchema, RunMethod } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { fieldOfError, parseRunForm, RUN_FORM_FIELDS } from "./config-form.js";

describe("parseRunForm", () => {
  it("turns the form's texts into RunConfig JSON that fromJson reads, leaving empty fields to the defaults", () => {
    const values = Object.fromEntries(RUN_FORM_FIELDS.map((f) => [f.path, f.initial]));
    values["policy_training.beta"] = "500";
    values.eval_prompts = "a red circle\n\n a blue square \n";
    values.seed = "18446744073709551615";
    const { json, errors } = parseRunForm(values);
    expect(errors).toEqual({});
    const config = fromJson(RunConfigSchema, json as never);
    expect(config.method).toBe(RunMethod.ITERATIVE_DPO);
    expect(config.iterations).toBe(2);
    expect(config.policyTraining?.steps).toBe(20);
    expect(config.policyTraining?.beta).toBe(500);
    expect(config.policyTraining?.learningRate).toBeUndefined();
    expect(config.evalPrompts).toEqual(["a red circle", "a blue square"]);
    expect(config.seed).toBe(18446744073709551615n);
    expect(config.name).toBe("");
  });

  it("names the fields whose text is not a value of their kind", () => {
    const { errors } = parseRunForm({ iterations: "two", "policy_training.beta": "1e", shard_size: "-3" });
    expect(Object.keys(errors).sort()).toEqual(["iterations", "policy_training.beta", "shard_size"]);
    expect(errors.iterations).toContain('"two"');
  });
});

describe("fieldOfError", () => {
  it("finds the form field a CreateRun message names, or its nearest form ancestor", () => {
    expect(fieldOfError("config.policy_training.steps: must be in [1, 1000000], got 0")).toBe(
      "policy_training.steps",
    );
    expect(fieldOfError("[invalid_argument] config.shard_size: 5000 is more than 4096")).toBe("shard_size");
    expect(fieldOfError("config.eval_prompts[2]: longer than 512 characters")).toBe("eval_prompts");
    expect(fieldOfError("config.base_training.warmup_steps: too many")).toBeUndefined();
    expect(fieldOfError("run_id: bad")).toBeUndefined();
  });
});
