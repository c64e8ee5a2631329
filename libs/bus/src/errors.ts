/** A compare-and-set write lost: the key's revision was not the expected one (or, for create, the key exists). */
export class RevisionConflictError extends Error {
  override readonly name = "RevisionConflictError";
  constructor(
    /** The key written. */
    readonly key: string,
    /** Revision the writer expected (0 for a create). */
    readonly expectedRevision: number,
    /** Revision found, when the backend reports it. */
    readonly actualRevision?: number,
  ) {
    super(
      expectedRevision === 0
        ? `state key "${key}" already exists${actualRevision ? ` at revision ${actualRevision}` : ""}`
        : `state key "${key}" is not at revision ${expectedRevision}` +
            (actualRevision !== undefined ? ` (it is at ${actualRevision})` : ""),
    );
  }
}

/** Thrown by a handler (or the typed decoder) for a message that can never be processed: the message is
 * terminated and reported at once instead of being redelivered. */
export class MalformedMessageError extends Error {
  override readonly name = "MalformedMessageError";
}

/** A bus configuration or backend setup problem (bad option, unreachable server, conflicting definition). */
export class BusConfigError extends Error {
  override readonly name = "BusConfigError";
}
