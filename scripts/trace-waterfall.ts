/**
 * Renders the trace of a real run as an SVG waterfall: runs a tiny `idpo quickstart` (a child process, with
 * OTEL_EXPORTER_OTLP_ENDPOINT pointing at an in-process OTLP/HTTP receiver), keeps the spans of the run's
 * trace and draws them as a trace viewer would (one row per span, depth-first, coloured by service).
 * Prints the span counts by service and the root span's duration.
 *
 *   npx tsx scripts/trace-waterfall.ts [--out docs/trace-waterfall.svg] [--protocol http/json]
 */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toJsonString } from "@bufbuild/protobuf";
import { RunConfigSchema } from "@idpo/proto";
import { type ReceivedSpan, SPAN_KIND, startOtlpReceiver } from "../test/support/otlp-receiver.js";
import { tinyRunConfig } from "../test/support/tiny-run.js";

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : fallback;
};
const out = arg("--out", "docs/trace-waterfall.svg");
const protocol = arg("--protocol", "http/protobuf");

const COLOURS: Record<string, string> = {
  "idpo-controller": "#4e79a7",
  "idpo-trainer": "#f28e2b",
  "idpo-generator": "#59a14f",
  "idpo-improver": "#e15759",
  "idpo-scorer": "#b07aa1",
  "idpo-quickstart": "#9c755f",
};
const KIND_NAMES = Object.fromEntries(Object.entries(SPAN_KIND).map(([k, v]) => [v, k.toLowerCase()]));

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function formatMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(ms >= 10_000 ? 1 : 2)} s` : `${ms.toFixed(ms >= 10 ? 0 : 1)} ms`;
}

/** Spans of one trace in depth-first order (children by start time), with their depth. */
function depthFirst(spans: ReceivedSpan[]): { span: ReceivedSpan; depth: number }[] {
  const children = new Map<string, ReceivedSpan[]>();
  for (const s of spans) {
    const list = children.get(s.parentSpanId) ?? [];
    list.push(s);
    children.set(s.parentSpanId, list);
  }
  for (const list of children.values()) list.sort((a, b) => (a.startNs < b.startNs ? -1 : 1));
  const out: { span: ReceivedSpan; depth: number }[] = [];
  const visit = (s: ReceivedSpan, depth: number) => {
    out.push({ span: s, depth });
    for (const c of children.get(s.spanId) ?? []) visit(c, depth + 1);
  };
  for (const r of children.get("") ?? []) visit(r, 0);
  return out;
}

/** The waterfall as SVG: a time axis, one row per span, a legend of services. */
function renderSvg(rows: { span: ReceivedSpan; depth: number }[], title: string): string {
  const root = rows[0].span;
  const t0 = root.startNs;
  const total = Number(root.endNs - t0) / 1e6;
  const labelW = 560;
  const barW = 760;
  const rowH = 13;
  const top = 58;
  const width = labelW + barW + 90;
  const height = top + rows.length * rowH + 20;
  const x = (ns: bigint) => labelW + (Number(ns - t0) / 1e6 / total) * barW;
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="monospace" font-size="10">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="8" y="16" font-size="13" font-weight="bold">${escapeXml(title)}</text>`,
  );
  let lx = 8;
  for (const [service, colour] of Object.entries(COLOURS)) {
    if (!rows.some((r) => r.span.service === service)) continue;
    parts.push(
      `<rect x="${lx}" y="24" width="10" height="10" fill="${colour}"/>`,
      `<text x="${lx + 14}" y="33">${service}</text>`,
    );
    lx += 14 + service.length * 6.2 + 14;
  }
  for (let i = 0; i <= 10; i++) {
    const gx = labelW + (i / 10) * barW;
    parts.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${height - 16}" stroke="#e4e4e4"/>`,
      `<text x="${gx}" y="${top - 9}" text-anchor="middle" fill="#666">${formatMs((total * i) / 10)}</text>`,
    );
  }
  rows.forEach(({ span, depth }, i) => {
    const y = top + i * rowH;
    const colour = COLOURS[span.service] ?? "#999999";
    const x0 = x(span.startNs);
    const w = Math.max(1, x(span.endNs) - x0);
    const kind = span.kind === SPAN_KIND.INTERNAL ? "" : ` [${KIND_NAMES[span.kind]}]`;
    const label = `${span.name}${kind}`;
    const shown = label.length > 84 - depth ? `${label.slice(0, 83 - depth)}…` : label;
    const ms = Number(span.endNs - span.startNs) / 1e6;
    parts.push(
      `<text x="${8 + depth * 8}" y="${y + 10}" fill="${colour}">${escapeXml(shown)}</text>`,
      `<rect x="${x0.toFixed(1)}" y="${y + 2}" width="${w.toFixed(1)}" height="${rowH - 4}" fill="${colour}"${span.statusCode === 2 ? ' stroke="#d00000"' : ""}><title>${escapeXml(`${span.service}: ${span.name} ${formatMs(ms)}`)}</title></rect>`,
      `<text x="${Math.min(x0 + w + 3, labelW + barW + 2).toFixed(1)}" y="${y + 10}" fill="#555">${formatMs(ms)}</text>`,
    );
  });
  parts.push("</svg>");
  return `${parts.join("\n")}\n`;
}

async function main(): Promise<void> {
  const receiver = await startOtlpReceiver();
  const dir = mkdtempSync(join(tmpdir(), "idpo-trace-waterfall-"));
  try {
    const configFile = join(dir, "run-config.json");
    writeFileSync(configFile, toJsonString(RunConfigSchema, tinyRunConfig()));
    const idpo = join(import.meta.dirname, "../cli/bin/idpo.js");
    const args = [idpo, "quickstart", "--config", configFile, "--out", join(dir, "report"), "--no-dashboard"];
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn(process.execPath, args, {
        env: {
          ...process.env,
          OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
          OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
        },
        stdio: ["ignore", "inherit", "inherit"],
      });
      child.once("exit", resolve);
    });
    if (code !== 0) throw new Error(`idpo quickstart exited ${code}`);
    const roots = receiver.spans.filter((s) => s.name === "idpo.run" && s.parentSpanId === "");
    if (roots.length !== 1) throw new Error(`expected one run root span, got ${roots.length}`);
    const root = roots[0];
    const inRun = receiver.spans.filter((s) => s.traceId === root.traceId);
    const rows = depthFirst(inRun);
    const seconds = Number(root.endNs - root.startNs) / 1e9;
    const title = `idpo quickstart (tiny config): run ${root.attributes["idpo.run_id"]}, ${inRun.length} spans, ${seconds.toFixed(1)} s`;
    writeFileSync(out, renderSvg(rows, title));
    const count = (spans: ReceivedSpan[]) => {
      const by: Record<string, number> = {};
      for (const s of spans) by[s.service] = (by[s.service] ?? 0) + 1;
      return Object.entries(by)
        .sort((a, b) => b[1] - a[1])
        .map(([k, v]) => `${k} ${v}`)
        .join(", ");
    };
    process.stdout.write(
      `${out}: ${rows.length} rows\n` +
        `all spans (${receiver.spans.length}): ${count(receiver.spans)}\n` +
        `run trace (${inRun.length}): ${count(inRun)}\n` +
        `root idpo.run: ${seconds.toFixed(2)} s\n`,
    );
  } finally {
    await receiver.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
