import { create } from "@bufbuild/protobuf";
import { CheckpointRefSchema } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { type LoadedModel, ModelSlot } from "./model-slot.js";

interface Fake {
  id: string;
}

function harness() {
  const disposed: string[] = [];
  const installed: string[] = [];
  const loads: string[] = [];
  const slot = new ModelSlot<Fake>(
    (m) => disposed.push(m.id),
    (ref) => installed.push(ref.id),
  );
  const load = async (id: string): Promise<LoadedModel<Fake>> => {
    loads.push(id);
    await new Promise((r) => setTimeout(r, 5));
    if (id === "broken") throw new Error("cannot load broken");
    return { model: { id }, ref: create(CheckpointRefSchema, { id }) };
  };
  return { slot, load, disposed, installed, loads };
}

describe("ModelSlot", () => {
  it("is empty until a load, then leases the current model", async () => {
    const h = harness();
    expect(h.slot.acquire()).toBeUndefined();
    expect(h.slot.current).toBeUndefined();
    const ref = await h.slot.load("a", h.load);
    expect(ref.id).toBe("a");
    const lease = h.slot.acquire()!;
    expect(lease.model.id).toBe("a");
    expect(lease.generation).toBe(1);
    lease.release();
    lease.release();
    expect(h.disposed).toEqual([]);
    expect(h.installed).toEqual(["a"]);
  });

  it("keeps a replaced model alive until its last lease is released, then disposes it once", async () => {
    const h = harness();
    await h.slot.load("a", h.load);
    const l1 = h.slot.acquire()!;
    const l2 = h.slot.acquire()!;
    await h.slot.load("b", h.load);
    expect(h.slot.current?.id).toBe("b");
    expect(h.slot.acquire()!.model.id).toBe("b");
    expect(l1.model.id).toBe("a");
    l1.release();
    expect(h.disposed).toEqual([]);
    l2.release();
    expect(h.disposed).toEqual(["a"]);
    l2.release();
    expect(h.disposed).toEqual(["a"]);
  });

  it("disposes an unleased model at once when replaced", async () => {
    const h = harness();
    await h.slot.load("a", h.load);
    await h.slot.load("b", h.load);
    expect(h.disposed).toEqual(["a"]);
  });

  it("serialises loads in call order and does not reload the current checkpoint", async () => {
    const h = harness();
    const p = [
      h.slot.load("a", h.load),
      h.slot.load("a", h.load),
      h.slot.load("b", h.load),
      h.slot.load("a", h.load),
    ];
    expect((await Promise.all(p)).map((r) => r.id)).toEqual(["a", "a", "b", "a"]);
    expect(h.loads).toEqual(["a", "b", "a"]);
    expect(h.slot.current?.id).toBe("a");
  });

  it("leaves the current model in place when a load fails, and keeps serving later loads", async () => {
    const h = harness();
    await h.slot.load("a", h.load);
    await expect(h.slot.load("broken", h.load)).rejects.toThrow(/cannot load broken/);
    expect(h.slot.current?.id).toBe("a");
    const lease = await h.slot.loadAndAcquire("c", h.load);
    expect(lease.model.id).toBe("c");
    lease.release();
  });

  it("close disposes the current model after its leases and refuses further loads", async () => {
    const h = harness();
    await h.slot.load("a", h.load);
    const lease = h.slot.acquire()!;
    h.slot.close();
    expect(h.slot.acquire()).toBeUndefined();
    expect(h.disposed).toEqual([]);
    lease.release();
    expect(h.disposed).toEqual(["a"]);
    await expect(h.slot.load("b", h.load)).rejects.toThrow(/closed/);
  });
});
