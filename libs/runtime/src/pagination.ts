import { Code, ConnectError } from "@connectrpc/connect";

/** Where an item sits in a newest-first listing: its creation time, then its id for ties. */
export interface PageCursor {
  /** Creation time in nanoseconds since the epoch. */
  createNanos: bigint;
  /** Unique id (ascending among items created at the same time). */
  id: string;
}

/** The paging fields of a List request. */
export interface PageRequest {
  /** Most items in the page; 0 means DEFAULT_PAGE_SIZE; at most MAX_PAGE_SIZE. */
  pageSize: number;
  /** "" for the first page, else the next_page_token of the previous response. */
  pageToken: string;
}

/** Items per page when the request leaves page_size at 0. */
export const DEFAULT_PAGE_SIZE = 100;
/** Largest page_size a List RPC accepts. */
export const MAX_PAGE_SIZE = 1000;

/** Nanoseconds since the epoch of a protobuf Timestamp (0 when unset). */
export function timestampNanos(t: { seconds: bigint; nanos: number } | undefined): bigint {
  return t ? t.seconds * 1_000_000_000n + BigInt(t.nanos) : 0n;
}

function compareCursors(a: PageCursor, b: PageCursor): number {
  if (a.createNanos !== b.createNanos) return a.createNanos > b.createNanos ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function encodePageToken(c: PageCursor): string {
  return Buffer.from(`${c.createNanos}.${c.id}`).toString("base64url");
}

function decodePageToken(token: string): PageCursor {
  const m = /^(\d{1,30})\.(.+)$/s.exec(Buffer.from(token, "base64url").toString("utf8"));
  if (!m) {
    throw new ConnectError(
      "page_token: malformed (use next_page_token of a previous response)",
      Code.InvalidArgument,
    );
  }
  return { createNanos: BigInt(m[1]), id: m[2] };
}

/**
 * One page of `items` listed newest first (ties by id), starting after the request's page token, and the
 * token of the next page ("" after the last). The token is the last item's cursor, so a page stays correct
 * when items are added or removed between calls. Errors are INVALID_ARGUMENT naming page_size or page_token.
 */
export function pageNewestFirst<T>(
  items: readonly T[],
  cursorOf: (item: T) => PageCursor,
  req: PageRequest,
): { items: T[]; nextPageToken: string } {
  if (req.pageSize > MAX_PAGE_SIZE) {
    throw new ConnectError(`page_size: ${req.pageSize} is more than ${MAX_PAGE_SIZE}`, Code.InvalidArgument);
  }
  const size = req.pageSize === 0 ? DEFAULT_PAGE_SIZE : req.pageSize;
  const after = req.pageToken === "" ? undefined : decodePageToken(req.pageToken);
  const listed = items
    .map((item) => ({ item, cursor: cursorOf(item) }))
    .filter((e) => after === undefined || compareCursors(e.cursor, after) > 0)
    .sort((a, b) => compareCursors(a.cursor, b.cursor));
  const page = listed.slice(0, size);
  const more = listed.length > size;
  return {
    items: page.map((e) => e.item),
    nextPageToken: more ? encodePageToken(page[page.length - 1].cursor) : "",
  };
}
