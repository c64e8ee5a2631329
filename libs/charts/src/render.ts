import { createRequire } from "node:module";
import { Resvg } from "@resvg/resvg-js";
import type { EChartsOption } from "echarts";
import { BarChart, LineChart } from "echarts/charts";
import { GridComponent, LegendComponent, TitleComponent, TooltipComponent } from "echarts/components";
import * as echarts from "echarts/core";
import { SVGRenderer } from "echarts/renderers";

echarts.use([
  LineChart,
  BarChart,
  GridComponent,
  LegendComponent,
  TitleComponent,
  TooltipComponent,
  SVGRenderer,
]);

/** Pixel size of a rendered chart. */
export interface ChartSize {
  width: number;
  height: number;
}

/** The family the reports' text is set in: Inter, shipped by an npm package, so a clean `npm ci` renders text. */
export const CHART_FONT_FAMILY = "Inter";

const require = createRequire(import.meta.url);

let fontFiles: string[] | undefined;

/** The Inter files (regular, and semibold for titles), resolved from node_modules once. */
function chartFontFiles(): string[] {
  fontFiles ??= ["400Regular/Inter_400Regular.ttf", "600SemiBold/Inter_600SemiBold.ttf"].map((f) =>
    require.resolve(`@expo-google-fonts/inter/${f}`),
  );
  return fontFiles;
}

function checkSize(size: ChartSize, what: string): void {
  for (const v of [size.width, size.height]) {
    if (!Number.isInteger(v) || v < 16 || v > 8192)
      throw new Error(`${what}: size must be whole pixels in [16, 8192], got ${size.width}x${size.height}`);
  }
}

/**
 * Renders an ECharts option to a standalone SVG document with ECharts' server-side renderer (no DOM), the
 * same drawing the dashboard shows in the browser.
 */
export function renderChartSvg(option: EChartsOption, size: ChartSize): string {
  checkSize(size, "renderChartSvg");
  const chart = echarts.init(null, undefined, {
    renderer: "svg",
    ssr: true,
    width: size.width,
    height: size.height,
  });
  try {
    chart.setOption(option);
    return chart.renderToSVGString();
  } finally {
    chart.dispose();
  }
}

function rasterise(svg: string, scale: number): ReturnType<Resvg["render"]> {
  if (!(scale > 0) || scale > 8) throw new Error(`svgToPng: scale must be in (0, 8], got ${scale}`);
  const resvg = new Resvg(svg, {
    font: {
      loadSystemFonts: false,
      fontFiles: chartFontFiles(),
      defaultFontFamily: CHART_FONT_FAMILY,
      sansSerifFamily: CHART_FONT_FAMILY,
      serifFamily: CHART_FONT_FAMILY,
      monospaceFamily: CHART_FONT_FAMILY,
    },
    fitTo: scale === 1 ? { mode: "original" } : { mode: "zoom", value: scale },
    background: "#ffffff",
    logLevel: "off",
  });
  return resvg.render();
}

/**
 * Rasterises an SVG to PNG bytes with resvg, setting its text in Inter whatever family it names (no system
 * fonts are read, so a figure comes out the same on every machine). `scale` enlarges it (default 1).
 */
export function svgToPng(svg: string, options: { scale?: number } = {}): Buffer {
  return rasterise(svg, options.scale ?? 1).asPng();
}

/** The same raster as `svgToPng`, as RGBA bytes (row-major, 4 per pixel) with its size. */
export function svgToRgba(
  svg: string,
  options: { scale?: number } = {},
): { width: number; height: number; rgba: Uint8Array } {
  const img = rasterise(svg, options.scale ?? 1);
  return { width: img.width, height: img.height, rgba: new Uint8Array(img.pixels) };
}

/** A chart as its SVG and a PNG of it (what a report writes side by side). */
export function renderChart(
  option: EChartsOption,
  size: ChartSize,
  options: { scale?: number } = {},
): { svg: string; png: Buffer } {
  const svg = renderChartSvg(option, size);
  return { svg, png: svgToPng(svg, options) };
}
