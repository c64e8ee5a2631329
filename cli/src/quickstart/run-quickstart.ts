import { copyFileSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Client, createClient } from "@connectrpc/connect";
import type { RunningDashboard } from "@idpo/dashboard";
import {
  followRun,
  formatDuration,
  progressLine,
  serveLocalDashboard,
  startLocalMesh,
} from "@idpo/local-mesh";
import { sharedBus } from "@idpo/mesh";
import { ControllerService, type Run, type RunConfig, RunStage, RunState } from "@idpo/proto";
import { createLogger, createPeerTransport } from "@idpo/runtime";
import { type QuickstartSettings, quickstartRunConfig } from "./quickstart-config.js";
import { type StageTiming, writeReport } from "./report.js";

/** Options of {@link runQuickstart}. */
export interface QuickstartOptions extends QuickstartSettings {
  /** Report folder. */
  out: string;
  /** The run's config instead of the quickstart's own (tests run a smaller one). */
  config?: RunConfig;
  /** Data directory of the embedded bus; default a fresh temporary directory. An existing one is reused:
   * a finished quickstart run with the same settings is reported again, an unfinished one resumed. */
  dataDir?: string;
  /** Port of the run dashboard on 127.0.0.1 (0: a free one; a busy port falls back to a free one);
   * false: no dashboard. Default false. */
  dashboardPort?: number | false;
}

/** Where the quickstart writes: progress to `err`; `tty` enables an in-place status line. */
export interface QuickstartIo {
  err: (text: string) => void;
  tty: boolean;
}

/** The result of a quickstart. */
export interface QuickstartResult {
  run: Run;
  /** Absolute path of the report folder. */
  reportDir: string;
  /** Files written into it (services.log is copied there too once the services stopped). */
  files: string[];
  /** Wall time, seconds. */
  wallSeconds: number;
  /** The data directory used. */
  dataDir: string;
  /** The dashboard's URL, when one was served. */
  dashboardUrl?: string;
}

/**
 * `idpo quickstart`: starts the whole mesh in this process on the embedded bus, creates a small iterative
 * DPO run on the shapes world, shows its progress live (from WatchRun), and writes a report folder.
 */
export async function runQuickstart(opts: QuickstartOptions, io: QuickstartIo): Promise<QuickstartResult> {
  const started = Date.now();
  const cpuStart = process.cpuUsage();
  const elapsed = () => (Date.now() - started) / 1000;
  const temporary = opts.dataDir === undefined;
  const dataDir = resolve(opts.dataDir ?? mkdtempSync(join(tmpdir(), "idpo-quickstart-")));
  mkdirSync(dataDir, { recursive: true });
  const logPath = join(dataDir, "services.log");
  const log = createWriteStream(logPath, { flags: "a" });
  const logger = createLogger("info", {}, (line) => log.write(`${line}\n`));
  io.err(`idpo quickstart: all five services in this process, embedded bus in ${dataDir}\n`);
  io.err(`  service logs: ${logPath} (copied into the report folder at the end)\n`);
  // Spans go to an OTLP collector when one is configured (OTEL_EXPORTER_OTLP_ENDPOINT): see startLocalMesh.
  const mesh = await startLocalMesh({ dataDir, logger, serviceName: "idpo-quickstart" });
  const onSigint = () => {
    io.err("\ninterrupted: stopping the services (rerun with --data-dir to resume)\n");
    void mesh.shutdown().finally(() => process.exit(130));
  };
  process.once("SIGINT", onSigint);
  let succeeded = false;
  let dashboard: RunningDashboard | undefined;
  try {
    if (opts.dashboardPort !== undefined && opts.dashboardPort !== false) {
      dashboard = await serveLocalDashboard(opts.dashboardPort, mesh.urls);
      io.err(`  dashboard: ${dashboard.url} (live while the quickstart runs)\n`);
    }
    const client = createClient(ControllerService, createPeerTransport(mesh.urls.controller));
    const config = opts.config ?? quickstartRunConfig(opts);
    const runId = `quickstart-k${opts.iterations}-p${opts.pairs}-s${opts.seed}${opts.fromScratch ? "-scratch" : ""}`;
    const created = (await client.createRun({ runId, config })).run!;
    io.err(
      `run ${runId}: ${config.iterations} iterations of ${config.pairsPerIteration} online pairs, ` +
        `preset ${config.modelPreset}, dataset ${config.dataset}\n`,
    );
    const { last, stages } = await showRun(client, runId, created, io, elapsed);
    const final = (await client.getRun({ runId })).run ?? last;
    const reportDir = resolve(opts.out);
    const bus = await sharedBus();
    const cpu = process.cpuUsage(cpuStart);
    const files = await writeReport(reportDir, {
      run: final,
      artifacts: bus.artifacts,
      wallSeconds: elapsed(),
      cpuSeconds: (cpu.user + cpu.system) / 1e6,
      stages,
    });
    if (final.state !== RunState.SUCCEEDED) {
      throw new Error(
        `run ${runId} ended ${RunState[final.state]}: ${final.error || "no reason given"} (partial report in ${reportDir}, logs in ${logPath})`,
      );
    }
    succeeded = true;
    return { run: final, reportDir, files, wallSeconds: elapsed(), dataDir, dashboardUrl: dashboard?.url };
  } finally {
    process.off("SIGINT", onSigint);
    await dashboard?.close();
    await mesh.shutdown();
    await new Promise<void>((r) => log.end(r));
    // The report keeps the services' log; a temporary data directory is only kept to diagnose a failure.
    if (existsSync(resolve(opts.out))) copyFileSync(logPath, join(resolve(opts.out), "services.log"));
    if (succeeded && temporary) rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Follows a run through WatchRun until it ends, showing its progress (rewritten in place on a terminal, else
 * a line per stage and at most one every 5 s within one), and times its stages.
 */
async function showRun(
  client: Client<typeof ControllerService>,
  runId: string,
  created: Run,
  io: QuickstartIo,
  elapsed: () => number,
): Promise<{ last: Run; stages: StageTiming[] }> {
  const stages: StageTiming[] = [];
  let lastLine = "";
  let lastStage = "";
  let lastPrinted = 0;
  let lastPrintedLine = "";
  const onUpdate = (run: Run) => {
    const now = elapsed();
    const stage = `${RunStage[run.stage]}/${run.iteration}`;
    const stageChanged = stage !== lastStage;
    if (run.state === RunState.RUNNING && stageChanged) {
      const current = stages[stages.length - 1];
      if (current) current.seconds = now - current.startSeconds;
      stages.push({ stage: RunStage[run.stage], iteration: run.iteration, startSeconds: now, seconds: 0 });
    }
    const line = `[${formatDuration(now).padStart(6)}] ${progressLine(run)}`;
    if (io.tty) {
      // One line per stage stays on screen; within a stage the line is rewritten in place.
      io.err(
        `${stageChanged && lastLine ? "\n" : "\r\x1b[K"}${line.slice(0, (process.stderr.columns || 120) - 1)}`,
      );
    } else if (stageChanged || (line !== lastLine && now - lastPrinted >= 5)) {
      // A finished stage's last line (its final step and loss) is kept in the log even when it came
      // sooner than the 5 s throttle allows.
      if (stageChanged && lastLine && lastLine !== lastPrintedLine) io.err(`${lastLine}\n`);
      io.err(`${line}\n`);
      lastPrinted = now;
      lastPrintedLine = line;
    }
    lastLine = line;
    lastStage = stage;
  };
  const last = await followRun(client, runId, { initial: created, onUpdate });
  if (io.tty) io.err("\n");
  const current = stages[stages.length - 1];
  if (current && current.seconds === 0) current.seconds = elapsed() - current.startSeconds;
  return { last, stages };
}
