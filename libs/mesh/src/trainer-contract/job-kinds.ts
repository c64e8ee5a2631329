import { JobKind, type TrainingConfig } from "@idpo/proto";
import { invalidField } from "./contract-error.js";

/** True for the preference-optimisation kinds: examples are pairs, and β and the lower learning rate apply. */
export function isPreferenceKind(kind: JobKind): boolean {
  return kind === JobKind.DPO || kind === JobKind.SPIN;
}

/** The kind `kind` names; INVALID_ARGUMENT naming `field` for UNSPECIFIED or an unknown value. */
export function checkJobKind(kind: JobKind, field: string): JobKind {
  if (!(kind in JobKind) || kind === JobKind.UNSPECIFIED) {
    throw invalidField(field, "required (PRETRAIN, IMPROVER, SFT, DPO or SPIN)");
  }
  return kind;
}

/** The TrainingConfig settings that only some kinds' objectives read. */
export type ObjectiveSetting =
  | "beta"
  | "promptDropout"
  | "improveTaskProbability"
  | "reconstructTaskProbability"
  | "sftWeight"
  | "dpoPositiveLambda";

/** Each objective setting: its proto field name and the job kinds whose objective reads it. */
export const OBJECTIVE_SETTINGS: Readonly<
  Record<ObjectiveSetting, { protoName: string; kinds: readonly JobKind[]; usedBy: string }>
> = {
  beta: { protoName: "beta", kinds: [JobKind.DPO, JobKind.SPIN], usedBy: "DPO and SPIN training" },
  promptDropout: {
    protoName: "prompt_dropout",
    kinds: [JobKind.PRETRAIN, JobKind.SFT],
    usedBy: "PRETRAIN and SFT training",
  },
  improveTaskProbability: {
    protoName: "improve_task_probability",
    kinds: [JobKind.IMPROVER],
    usedBy: "IMPROVER training",
  },
  reconstructTaskProbability: {
    protoName: "reconstruct_task_probability",
    kinds: [JobKind.IMPROVER],
    usedBy: "IMPROVER training",
  },
  sftWeight: { protoName: "sft_weight", kinds: [JobKind.DPO, JobKind.SPIN], usedBy: "DPO and SPIN training" },
  dpoPositiveLambda: {
    protoName: "dpo_positive_lambda",
    kinds: [JobKind.DPO, JobKind.SPIN],
    usedBy: "DPO and SPIN training",
  },
};

/** Whether the objective of `kind` reads `setting`. */
export function kindUses(kind: JobKind, setting: ObjectiveSetting): boolean {
  return OBJECTIVE_SETTINGS[setting].kinds.includes(kind);
}

/**
 * Throws INVALID_ARGUMENT naming `field`.<setting> when `t` sets an objective setting that `kind` ignores
 * (CreateRun's rule: a run's stage shows only what its job uses, and a silently ignored setting is a mistake).
 */
export function rejectUnusedSettings(t: TrainingConfig, kind: JobKind, field: string): void {
  for (const [setting, info] of Object.entries(OBJECTIVE_SETTINGS) as [
    ObjectiveSetting,
    (typeof OBJECTIVE_SETTINGS)[ObjectiveSetting],
  ][]) {
    if (t[setting] !== undefined && !info.kinds.includes(kind)) {
      throw invalidField(`${field}.${info.protoName}`, `only applies to ${info.usedBy}`);
    }
  }
}
