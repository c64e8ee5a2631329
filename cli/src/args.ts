import { DASHBOARD_DEFAULT_PORT } from "@idpo/dashboard";
import { type Command, InvalidArgumentError } from "commander";

/**
 * A commander parser of an integer flag in [min, max]; a bad value is an InvalidArgumentError naming the
 * flag, so commander prints it with the usage.
 */
export function intArg(flag: string, min: number, max = Number.MAX_SAFE_INTEGER): (v: string) => number {
  return (v) => {
    if (!/^-?\d+$/.test(v.trim())) throw new InvalidArgumentError(`${flag} must be an integer, got "${v}"`);
    const n = Number(v);
    if (n < min || n > max) throw new InvalidArgumentError(`${flag} must be in [${min}, ${max}], got ${n}`);
    return n;
  };
}

/** Bounds of a {@link numberArg}: [min, max], or (min, max] with `minOpen`. */
export interface NumberRange {
  min: number;
  max: number;
  minOpen?: boolean;
}

/** A commander parser of a finite number flag, optionally in a range; errors name the flag. */
export function numberArg(flag: string, range?: NumberRange): (v: string) => number {
  const where = range ? ` in ${range.minOpen ? "(" : "["}${range.min}, ${range.max}]` : "";
  return (v) => {
    const n = Number(v);
    const inRange = !range || ((range.minOpen ? n > range.min : n >= range.min) && n <= range.max);
    if (v.trim() === "" || !Number.isFinite(n) || !inRange) {
      throw new InvalidArgumentError(`${flag} must be a number${where}, got "${v}"`);
    }
    return n;
  };
}

/**
 * Adds `--dashboard-port <port>` and `--no-dashboard` to a command that serves the run dashboard of its
 * own mesh; the action reads `dashboard` (boolean) and `dashboardPort`.
 */
export function withDashboardOptions(command: Command): Command {
  return command
    .option(
      "--dashboard-port <port>",
      "port of the run dashboard on 127.0.0.1 (a busy port falls back to a free one; 0 picks a free one)",
      intArg("--dashboard-port", 0, 65535),
      DASHBOARD_DEFAULT_PORT,
    )
    .option("--no-dashboard", "do not serve the run dashboard");
}
