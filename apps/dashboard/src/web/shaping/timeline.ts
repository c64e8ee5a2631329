import { type Run, RunMethod, RunStage, RunState } from "@idpo/proto";

/** Status of one step of a run's timeline. */
export type StepStatus = "done" | "active" | "pending" | "stopped";

/** One step of a run: a stage, of an iteration where it has one. */
export interface TimelineStep {
  /** Stable key, e.g. "base", "eval-0", "generate-2". */
  key: string;
  /** What it is, e.g. "iteration 2: DPO". */
  label: string;
  status: StepStatus;
  /** Short facts: shards, steps, reward. */
  detail: string;
}

/** A step before its status is decided: whether it is done, and the stage and iteration that run it. */
interface PlannedStep {
  key: string;
  label: string;
  done: boolean;
  stage: RunStage;
  k: number;
  detail: string;
}

/**
 * The stages a run goes through, in order, with what is done, what is running and what is left, decided from
 * the run alone as the controller decides its next action: base model, improver (iterative DPO), evaluation
 * of the base model, then per iteration the online pairs (iterative DPO), the training job and the evaluation.
 * When the run has failed or been cancelled, the first unfinished step is the one that was stopped.
 */
export function timeline(run: Run): TimelineStep[] {
  const iterative = (run.config?.method ?? RunMethod.ITERATIVE_DPO) === RunMethod.ITERATIVE_DPO;
  const steps = setupSteps(run, iterative);
  const total = Math.max(run.config?.iterations ?? 0, run.iterations.length);
  for (let k = 1; k <= total; k++) steps.push(...iterationSteps(run, k, iterative));
  return withStatus(run, steps);
}

function reward(e: Run["baseEvaluation"]): string {
  return e?.reward
    ? `reward ${e.reward.mean.toFixed(3)} [${e.reward.ci95Low.toFixed(3)}, ${e.reward.ci95High.toFixed(3)}]`
    : "";
}

/** The steps before the first iteration: the base model, the improver (iterative DPO), the base's evaluation. */
function setupSteps(run: Run, iterative: boolean): PlannedStep[] {
  const cfg = run.config;
  const steps: PlannedStep[] = [];
  steps.push({
    key: "base",
    label: cfg?.baseCheckpointId ? "base model (loaded)" : "base model",
    done: !!run.baseCheckpoint,
    stage: RunStage.BASE,
    k: 0,
    detail: run.baseCheckpoint?.id ?? "",
  });
  if (iterative) {
    steps.push({
      key: "improver",
      label: cfg?.improverCheckpointId ? "improver (loaded)" : "improver",
      done: !!run.improverCheckpoint,
      stage: RunStage.IMPROVER,
      k: 0,
      detail: run.improverCheckpoint?.id ?? "",
    });
  }
  steps.push({
    key: "eval-0",
    label: "evaluate base",
    done: !!run.baseEvaluation,
    stage: RunStage.EVALUATE,
    k: 0,
    detail: reward(run.baseEvaluation),
  });
  return steps;
}

/** Iteration `k`'s steps: its online pairs (iterative DPO), its training job and its evaluation. */
function iterationSteps(run: Run, k: number, iterative: boolean): PlannedStep[] {
  const method = run.config?.method;
  const trainLabel =
    method === RunMethod.SPIN
      ? "SPIN"
      : method === RunMethod.SFT
        ? "SFT"
        : method === RunMethod.DPO_OFFLINE
          ? "offline DPO"
          : "DPO";
  const it = run.iterations[k - 1];
  const steps: PlannedStep[] = [];
  if (iterative) {
    steps.push({
      key: `generate-${k}`,
      label: `iteration ${k}: online pairs`,
      done: !!it && it.shardsTotal > 0 && it.shardsDone >= it.shardsTotal,
      stage: RunStage.GENERATE,
      k,
      detail: it ? `${it.shardsDone}/${it.shardsTotal} shards, ${it.pairs} pairs` : "",
    });
  }
  const loss = it?.trainMetrics.loss;
  steps.push({
    key: `train-${k}`,
    label: `iteration ${k}: ${trainLabel}`,
    done: !!it?.checkpoint,
    stage: RunStage.TRAIN,
    k,
    detail: loss !== undefined ? `final loss ${loss.toPrecision(4)}` : "",
  });
  steps.push({
    key: `eval-${k}`,
    label: `iteration ${k}: evaluate`,
    done: !!it?.evaluation,
    stage: RunStage.EVALUATE,
    k,
    detail: reward(it?.evaluation),
  });
  return steps;
}

/** Each step's status: done, active (the run's stage and iteration now), stopped (a failed or cancelled
 * run's first unfinished step, showing the error) or pending. */
function withStatus(run: Run, steps: PlannedStep[]): TimelineStep[] {
  const stopped = run.state === RunState.FAILED || run.state === RunState.CANCELLED;
  let firstOpen = true;
  return steps.map((s) => {
    let status: StepStatus = "pending";
    if (s.done) status = "done";
    else if (run.state === RunState.RUNNING && s.stage === run.stage && s.k === run.iteration)
      status = "active";
    else if (stopped && firstOpen) status = "stopped";
    if (!s.done) firstOpen = false;
    let detail = s.detail;
    if (status === "active" && run.progress?.message) detail = run.progress.message;
    if (status === "stopped" && run.error) detail = run.error;
    return { key: s.key, label: s.label, status, detail };
  });
}
