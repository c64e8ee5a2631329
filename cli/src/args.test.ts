import { describe, expect, it } from "vitest";
import { intArg, numberArg } from "./args.js";

describe("intArg and numberArg", () => {
  it("parse what is in range", () => {
    expect(intArg("--n", 1, 10)(" 7 ")).toBe(7);
    expect(intArg("--n", -5)("-3")).toBe(-3);
    expect(numberArg("--x")("2.5e-3")).toBe(0.0025);
    expect(numberArg("--s", { min: 0, max: 1, minOpen: true })("1")).toBe(1);
  });

  it("reject the rest, naming the flag", () => {
    expect(() => intArg("--n", 1, 10)("ten")).toThrow('--n must be an integer, got "ten"');
    expect(() => intArg("--n", 1, 10)("1.5")).toThrow(/--n must be an integer/);
    expect(() => intArg("--n", 1, 10)("11")).toThrow("--n must be in [1, 10], got 11");
    expect(() => numberArg("--x")("")).toThrow('--x must be a number, got ""');
    expect(() => numberArg("--x")("inf")).toThrow(/--x must be a number/);
    expect(() => numberArg("--s", { min: 0, max: 1, minOpen: true })("0")).toThrow(
      '--s must be a number in (0, 1], got "0"',
    );
    expect(() => numberArg("--g", { min: 0, max: 30 })("31")).toThrow(
      '--g must be a number in [0, 30], got "31"',
    );
  });
});
