export * from "./evaluate.js";
export * from "./oracle.js";
export * from "./stats.js";
export * from "./vendi.js";
export * from "./win-rate.js";
