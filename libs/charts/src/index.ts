/**
 * @idpo/charts: the ECharts options of every chart idpo draws, shared by the dashboard (in the browser) and
 * the reports (rendered server-side by "@idpo/charts/render" to SVG and PNG). Browser-safe: nothing here
 * imports Node. See libs/charts/README.md.
 */
export * from "./band.js";
export * from "./curve-chart.js";
export * from "./histogram-chart.js";
export * from "./nice-range.js";
export * from "./palette.js";
export * from "./panel-layout.js";
export * from "./reward-chart.js";
