export * from "./oracle.js";
