import { create } from "@bufbuild/protobuf";
import { JobKind, JobSchema } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { isPreferenceJob, jobCurves } from "./job-curves.js";

describe("jobCurves", () => {
  it("draws loss, implicit accuracy and model vs reference loss for a DPO job", () => {
    const job = create(JobSchema, {
      spec: { kind: JobKind.DPO },
      history: [
        { step: 10, metrics: { loss: 0.69, implicit_acc: 0.5, raw_model_loss: 0.1, ref_loss: 0.1 } },
        { step: 20, metrics: { loss: 0.6, implicit_acc: 0.75, raw_model_loss: 0.09, ref_loss: 0.1 } },
      ],
    });
    expect(isPreferenceJob(job)).toBe(true);
    const panels = jobCurves(job);
    expect(panels.map((p) => p.title)).toEqual(["loss", "implicit accuracy", "model vs reference loss"]);
    expect(panels[0].steps).toEqual([10, 20]);
    expect(panels[1].series).toEqual([{ name: "implicit_acc", values: [0.5, 0.75] }]);
    expect(panels[2].series.map((s) => s.name)).toEqual(["raw_model_loss", "ref_loss"]);
    expect(panels[2].series[0].values).toEqual([0.1, 0.09]);
  });

  it("shows loss only for pretraining, leaves out metrics never recorded and marks gaps", () => {
    const pre = create(JobSchema, {
      spec: { kind: JobKind.PRETRAIN },
      history: [{ step: 1, metrics: { loss: 1, lr: 0.001 } }],
    });
    expect(jobCurves(pre).map((p) => p.title)).toEqual(["loss"]);
    const spin = create(JobSchema, {
      spec: { kind: JobKind.SPIN },
      history: [
        { step: 1, metrics: { loss: 1 } },
        { step: 2, metrics: { loss: 0.9, implicit_acc: 1 } },
      ],
    });
    const panels = jobCurves(spin);
    expect(panels.map((p) => p.title)).toEqual(["loss", "implicit accuracy"]);
    expect(panels[1].series[0].values).toEqual([null, 1]);
  });
});
