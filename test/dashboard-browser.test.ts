/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core) against a running tiny mesh:
 * the run list shows a run started by `idpo run create`, its reward chart gains a point when an iteration is
 * evaluated, pair and sample images load, the Improver page returns an image, a run created from the form is
 * cancelled from its page. A screenshot of the run page is written for the report (IDPO_DASHBOARD_SCREENSHOT,
 * default a temporary file).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { toJsonString } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { type RunningDashboard, startDashboard } from "@idpo/dashboard";
import { encodePng, solidImage } from "@idpo/data";
import { type LocalMesh, startLocalMesh } from "@idpo/local-mesh";
import { ControllerService, type RunConfig, RunConfigSchema, RunState } from "@idpo/proto";
import { createLogger, createPeerTransport } from "@idpo/runtime";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tinyRunConfig } from "./support/tiny-run.js";

const CHROMIUM = process.env.IDPO_CHROMIUM ?? "/usr/bin/chromium";
const run = promisify(execFile);

/** The suite's tiny run (its base and improver training take seconds, so the run page is open before
 * anything is evaluated). */
function browserRunConfig(): RunConfig {
  const config = tinyRunConfig();
  config.name = "browser-test";
  return config;
}

describe.skipIf(!existsSync(CHROMIUM))("dashboard in a browser", () => {
  const dir = mkdtempSync(join(tmpdir(), "idpo-dash-browser-"));
  let mesh: LocalMesh;
  let dashboard: RunningDashboard;
  let browser: Browser;
  let page: Page;

  beforeAll(async () => {
    mesh = await startLocalMesh({ dataDir: join(dir, "data"), logger: createLogger("error", {}, () => {}) });
    dashboard = await startDashboard({ port: 0, peers: mesh.urls });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-gpu"] });
    page = await browser.newPage({ viewport: { width: 1400, height: 1300 } });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await dashboard?.close();
    await mesh?.shutdown();
    rmSync(dir, { recursive: true, force: true });
  });

  it("follows a run live, shows its images, runs the Improver, and creates and cancels a run", {
    timeout: 240_000,
  }, async () => {
    const errors: string[] = [];
    const controller = createClient(ControllerService, createPeerTransport(mesh.urls.controller));
    page.on("pageerror", (e) => errors.push(e.message));

    // A run started by the CLI appears in the list without a reload.
    await page.goto(dashboard.url);
    await page.waitForSelector("#runs");
    const configFile = join(dir, "run.json");
    writeFileSync(configFile, toJsonString(RunConfigSchema, browserRunConfig()));
    const cli = join(import.meta.dirname, "../cli/bin/idpo.js");
    await run(process.execPath, [
      cli,
      "run",
      "create",
      "--config",
      configFile,
      "--id",
      "dash-a",
      "--addr",
      mesh.urls.controller,
    ]);
    await page.waitForSelector('tr[data-run="dash-a"]', { timeout: 15_000 });

    // Its page (the list's link): the reward chart gains the iteration's point while the page stays open.
    await page.goto(`${dashboard.url}#/runs/dash-a`);
    await page.waitForSelector("#reward-chart[data-points]");
    const before = Number(await page.getAttribute("#reward-chart", "data-points"));
    expect(before).toBeLessThan(2);
    await page.waitForSelector('#reward-chart[data-points="2"]', { timeout: 180_000 }).catch(async (err) => {
      // Say where the run was, so a slow machine is told apart from a dashboard that missed an update.
      const r = (await controller.getRun({ runId: "dash-a" })).run!;
      throw new Error(
        `${(err as Error).message}\nrun: ${RunState[r.state]}, ${r.progress?.message} ${r.error}`,
      );
    });
    await page.waitForSelector("#run-state:text('succeeded')", { timeout: 60_000 });
    expect(await page.locator('li[data-step="eval-1"].done').count()).toBe(1);

    // Images: a sample grid row per model, a pair grid for the iteration, all decoded; job curves drawn.
    await page.waitForSelector('#sample-grid tr[data-model="iter 1"] img', { timeout: 15_000 });
    await page.waitForSelector('#pairs [data-iteration="1"] img');
    await page.waitForSelector('#curves [data-job] [data-chart="curve"]');
    // (Browser-side code as strings: this file is compiled without the DOM types.)
    await page.waitForFunction(
      "[...document.querySelectorAll('#sample-grid img, #pairs img')].every((i) => i.complete && i.naturalWidth === 16)",
    );
    expect(await page.locator('#sample-grid tr[data-model="base"] img').count()).toBe(4);
    const shot = process.env.IDPO_DASHBOARD_SCREENSHOT ?? join(dir, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    expect(existsSync(shot)).toBe(true);

    // The Improver page: a PNG in, an improved image out.
    await page.goto(`${dashboard.url}#/improver`);
    await page.waitForSelector("#improver-model:text('model ')");
    await page.setInputFiles("#improver-file", {
      name: "in.png",
      mimeType: "image/png",
      buffer: encodePng(solidImage(16, 16, [0.8, 0.1, 0.1])),
    });
    await page.fill("#improver-steps", "4");
    await page.click("#improve");
    await page.waitForSelector("#improved img", { timeout: 60_000 });
    await page.waitForFunction("document.querySelector('#improved img').naturalWidth === 16");

    // Create from the form: a bad value is named on its field by the controller's validation, then a run is
    // created and cancelled from its page.
    await page.goto(`${dashboard.url}#/new`);
    await page.fill("#f-shard_size", "5000");
    await page.waitForSelector("#e-shard_size:text('shard_size')");
    expect(await page.isDisabled("#create-run")).toBe(true);
    await page.fill("#f-shard_size", "4");
    await page.fill("#f-run_id", "dash-b");
    await page.fill('[id="f-base_training.steps"]', "100000");
    await page.waitForSelector("#form-verdict:text('accepts')");
    await page.click("#create-run");
    await page.waitForURL(/#\/runs\/dash-b$/);
    await page.waitForSelector("#cancel-run:not([disabled])");
    await page.click("#cancel-run");
    await page.waitForSelector("#run-state:text('cancelled')");
    expect((await controller.getRun({ runId: "dash-b" })).run!.state).toBe(RunState.CANCELLED);
    expect(errors).toEqual([]);
  });
});
