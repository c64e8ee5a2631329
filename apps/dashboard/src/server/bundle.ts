import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** The single-page app's files, built in memory. */
export interface DashboardBundle {
  /** index.html. */
  html: string;
  /** The app and everything it imports (ECharts, the generated clients), one minified ES module. */
  js: string;
  /** The stylesheet. */
  css: string;
}

const WEB_DIR = fileURLToPath(new URL("../web/", import.meta.url));

let built: Promise<DashboardBundle> | undefined;

/**
 * Bundles the browser app from its TypeScript sources with esbuild (a second or two), so a fresh clone needs
 * no build step and nothing generated is committed. Built once per process; a failed build is tried again.
 */
export function buildDashboardBundle(): Promise<DashboardBundle> {
  built ??= bundle().catch((err) => {
    built = undefined;
    throw err;
  });
  return built;
}

async function bundle(): Promise<DashboardBundle> {
  const out = await build({
    entryPoints: [`${WEB_DIR}main.ts`],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: true,
    write: false,
    legalComments: "none",
    logLevel: "silent",
  });
  const [html, css] = await Promise.all([
    readFile(`${WEB_DIR}index.html`, "utf8"),
    readFile(`${WEB_DIR}styles.css`, "utf8"),
  ]);
  return { html, js: out.outputFiles[0].text, css };
}
