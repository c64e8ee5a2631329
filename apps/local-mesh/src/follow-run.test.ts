import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { ControllerService, RunState } from "@idpo/proto";
import { describe, expect, it } from "vitest";
import { followRun } from "./follow-run.js";

/** One WatchRun call of the fake controller: the states it sends, then how it ends. */
interface Watch {
  states: RunState[];
  end?: "error" | "unavailable" | "hang";
}

/** An in-memory Controller whose WatchRun calls answer `watches` in turn and whose GetRun answers `got`. */
function fakeController(watches: Watch[], got: RunState = RunState.RUNNING) {
  const calls = { watch: 0, get: 0 };
  const transport = createRouterTransport((router) =>
    router.service(ControllerService, {
      async *watchRun(req, ctx) {
        const w = watches[calls.watch++] ?? { states: [] };
        for (const state of w.states) yield { run: { runId: req.runId, state } };
        if (w.end === "unavailable") throw new ConnectError("controller restarting", Code.Unavailable);
        if (w.end === "error") throw new ConnectError("no such run", Code.NotFound);
        if (w.end === "hang") await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
      },
      getRun(req) {
        calls.get++;
        return { run: { runId: req.runId, state: got } };
      },
    }),
  );
  return { client: createClient(ControllerService, transport), calls };
}

describe("followRun", () => {
  it("returns the run at its end, having shown every update once", async () => {
    const { client, calls } = fakeController([
      { states: [RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED, RunState.RUNNING] },
    ]);
    const seen: RunState[] = [];
    const run = await followRun(client, "r1", { onUpdate: (r) => void seen.push(r.state) });
    expect(run?.state).toBe(RunState.SUCCEEDED);
    expect(seen).toEqual([RunState.PENDING, RunState.RUNNING, RunState.SUCCEEDED]);
    expect(calls).toEqual({ watch: 1, get: 0 });
  });

  it("watches once by default: an early end returns the last update, an error is thrown", async () => {
    const early = fakeController([{ states: [RunState.RUNNING] }, { states: [RunState.SUCCEEDED] }]);
    expect((await followRun(early.client, "r2"))?.state).toBe(RunState.RUNNING);
    expect(early.calls.watch).toBe(1);

    const silent = fakeController([{ states: [] }]);
    expect(await followRun(silent.client, "r2")).toBeUndefined();
    const initial = (await silent.client.getRun({ runId: "r2" })).run!;
    expect(await followRun(silent.client, "r2", { initial })).toBe(initial);

    const broken = fakeController([{ states: [RunState.RUNNING], end: "unavailable" }]);
    await expect(followRun(broken.client, "r2")).rejects.toThrow(/controller restarting/);
  });

  it("opens the watch again after the errors it is told to retry, reading the run in between", async () => {
    const { client, calls } = fakeController([
      { states: [RunState.RUNNING], end: "unavailable" },
      { states: [RunState.RUNNING] },
      { states: [RunState.RUNNING, RunState.FAILED] },
    ]);
    const retried: string[] = [];
    const run = await followRun(client, "r3", {
      attempts: 5,
      retryOn: (err) => {
        retried.push((err as Error).message);
        return err instanceof ConnectError && err.code === Code.Unavailable;
      },
      retryDelayMs: 1,
      refresh: true,
    });
    expect(run?.state).toBe(RunState.FAILED);
    expect(retried).toEqual(["[unavailable] controller restarting"]);
    expect(calls).toEqual({ watch: 3, get: 2 });

    const other = fakeController([{ states: [], end: "error" }]);
    const notRetried = followRun(other.client, "r3", {
      attempts: 5,
      retryOn: (err) => err instanceof ConnectError && err.code === Code.Unavailable,
    });
    await expect(notRetried).rejects.toThrow(/no such run/);
  });

  it("stops when a GetRun between watches finds the run ended, and when the attempts run out", async () => {
    const ended = fakeController([{ states: [RunState.RUNNING] }], RunState.CANCELLED);
    const run = await followRun(ended.client, "r4", { attempts: 5, refresh: true });
    expect(run?.state).toBe(RunState.CANCELLED);
    expect(ended.calls).toEqual({ watch: 1, get: 1 });

    const endless = fakeController([
      { states: [RunState.PENDING] },
      { states: [RunState.RUNNING] },
      { states: [RunState.RUNNING] },
    ]);
    expect((await followRun(endless.client, "r4", { attempts: 2 }))?.state).toBe(RunState.RUNNING);
    expect(endless.calls.watch).toBe(2);
  });

  it("returns the last update, without an error, once its signal is aborted", async () => {
    const { client } = fakeController([{ states: [RunState.RUNNING], end: "hang" }]);
    const ac = new AbortController();
    const run = await followRun(client, "r5", {
      signal: ac.signal,
      attempts: 3,
      onUpdate: () => ac.abort(),
    });
    expect(run?.state).toBe(RunState.RUNNING);
  });
});
