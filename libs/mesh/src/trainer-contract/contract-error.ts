import { Code, ConnectError } from "@connectrpc/connect";

/** The trainer contract's one error: INVALID_ARGUMENT whose message starts with the offending field. */
export function invalidField(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/**
 * Throws INVALID_ARGUMENT naming `field` unless `v` is a finite number in the interval; the bounds are
 * closed unless `lowOpen`/`highOpen` say otherwise.
 */
export function checkRange(
  field: string,
  v: number,
  lo: number,
  hi: number,
  bounds: { lowOpen?: boolean; highOpen?: boolean } = {},
): void {
  const okLo = bounds.lowOpen ? v > lo : v >= lo;
  const okHi = bounds.highOpen ? v < hi : v <= hi;
  if (!Number.isFinite(v) || !okLo || !okHi) {
    throw invalidField(
      field,
      `${v} is outside ${bounds.lowOpen ? "(" : "["}${lo}, ${hi}${bounds.highOpen ? ")" : "]"}`,
    );
  }
}
