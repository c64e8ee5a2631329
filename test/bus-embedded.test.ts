import { spawn } from "node:child_process";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { openBus } from "../libs/bus/src/index.js";
import { busContract, TEST_LIMITS, waitFor } from "./bus-contract.js";

const root = mkdtempSync(join(tmpdir(), "idpo-bus-embedded-"));
let n = 0;
afterAll(() => rmSync(root, { recursive: true, force: true }));

// The same contract on the embedded backend: each namespace is a fresh data directory.
busContract("embedded", {
  namespace: () => join(root, `ns${n++}`),
  open: (dataDir, limits) => openBus({ backend: "embedded", dataDir, limits }),
});

describe("embedded bus: one process, crash safety", () => {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const busSrc = fileURLToPath(new URL("../libs/bus/src/index.ts", import.meta.url));
  const repoRoot = fileURLToPath(new URL("..", import.meta.url));

  it("refuses a second process, and keeps everything a SIGKILLed process stored", async () => {
    const dataDir = join(root, "crash");
    const script = join(root, "crash-child.mts");
    writeFileSync(
      script,
      `import { openBus } from ${JSON.stringify(busSrc)};
const enc = new TextEncoder();
const bus = await openBus({ backend: "embedded", dataDir: ${JSON.stringify(dataDir)} });
await bus.state.create("runs.crash", enc.encode("RUNNING"));
await bus.artifacts.put("ckpt/crash.bin", new Uint8Array(100_000).fill(5));
await bus.events.publish("idpo.events.crash.pairs_ready", enc.encode("e1"), { msgId: "crash/e1" });
await bus.work.enqueue(enc.encode("acked"), { msgId: "w1" });
await bus.work.enqueue(enc.encode("in-progress"), { msgId: "w2" });
await bus.work.consume(async (m) => {
  if (new TextDecoder().decode(m.data) === "in-progress") {
    console.log("READY");
    await new Promise(() => {});
  }
});
`,
    );
    const child = spawn(process.execPath, ["--import", "tsx", script], {
      cwd: repoRoot,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d) => {
      out += String(d);
    });
    child.stderr.on("data", (d) => {
      out += String(d);
    });
    try {
      await waitFor(() => out.includes("READY"), "the child to store its data", 20_000);
      await expect(openBus({ backend: "embedded", dataDir })).rejects.toThrow(
        new RegExp(`in use by process ${child.pid}`),
      );
    } finally {
      await new Promise<void>((resolve) => {
        child.once("exit", () => resolve());
        child.kill("SIGKILL");
      });
    }
    const bus = await openBus({ backend: "embedded", dataDir });
    try {
      const e = await bus.state.get("runs.crash");
      expect(e && dec.decode(e.value)).toBe("RUNNING");
      expect((await bus.artifacts.get("ckpt/crash.bin"))?.length).toBe(100_000);
      expect(await bus.events.lastSeq()).toBe(1);
      expect(
        (await bus.events.publish("idpo.events.crash.pairs_ready", enc.encode("e1"), { msgId: "crash/e1" }))
          .duplicate,
      ).toBe(true);
      expect(await bus.work.pending()).toBe(1);
      const got: string[] = [];
      const sub = await bus.work.consume((m) => void got.push(`${dec.decode(m.data)}#${m.deliveryCount}`));
      await waitFor(() => got.length === 1, "the dead process's item");
      expect(got).toEqual(["in-progress#2"]);
      await sub.stop();
    } finally {
      await bus.close();
    }
  });

  it("shares one store between handles opened in the same process", async () => {
    const dataDir = join(root, "shared");
    const a = await openBus({ backend: "embedded", dataDir, limits: TEST_LIMITS });
    const b = await openBus({ backend: "embedded", dataDir, limits: TEST_LIMITS });
    const got: string[] = [];
    const sub = await b.events.subscribe({ consumer: "b" }, (m) => void got.push(dec.decode(m.data)));
    await a.events.publish("idpo.events.r.k", enc.encode("from a"), { msgId: "1" });
    await waitFor(() => got.length === 1, "event across handles");
    await a.close();
    await b.state.put("still.open", enc.encode("yes"));
    expect((await b.state.get("still.open"))?.revision).toBe(1);
    await expect(
      openBus({ backend: "embedded", dataDir, limits: { ...TEST_LIMITS, workMaxDeliver: 9 } }),
    ).rejects.toThrow(/other definitions/);
    await sub.stop();
    await b.close();
  });

  it("drops a torn log tail left by a crash mid-write and keeps the records before it", async () => {
    const dataDir = join(root, "torn");
    const a = await openBus({ backend: "embedded", dataDir });
    await a.state.put("k.one", enc.encode("1"));
    await a.state.put("k.two", enc.encode("2"));
    await a.close();
    const log = join(dataDir, "bus", "default", "state", "state.log");
    appendFileSync(log, Buffer.from([40, 0, 0, 0, 1, 2, 3]));
    const b = await openBus({ backend: "embedded", dataDir });
    expect(await b.state.keys("k.")).toEqual(["k.one", "k.two"]);
    expect(await b.state.put("k.three", enc.encode("3"))).toBe(3);
    await b.close();
    const c = await openBus({ backend: "embedded", dataDir });
    expect(await c.state.keys("k.")).toEqual(["k.one", "k.three", "k.two"]);
    await c.close();
  });
});
