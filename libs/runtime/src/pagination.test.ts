import { Code, type ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { pageNewestFirst, timestampNanos } from "./pagination.js";

interface Item {
  id: string;
  t: bigint;
}
const cursor = (i: Item) => ({ createNanos: i.t, id: i.id });
const items: Item[] = [
  { id: "b", t: 5n },
  { id: "a", t: 5n },
  { id: "c", t: 9n },
  { id: "d", t: 1n },
  { id: "e", t: 7n },
];

function all(pageSize: number, list = items): string[][] {
  const pages: string[][] = [];
  let pageToken = "";
  do {
    const p = pageNewestFirst(list, cursor, { pageSize, pageToken });
    pages.push(p.items.map((i) => i.id));
    pageToken = p.nextPageToken;
  } while (pageToken !== "");
  return pages;
}

function invalid(run: () => unknown): string {
  try {
    run();
  } catch (e) {
    expect((e as ConnectError).code).toBe(Code.InvalidArgument);
    return (e as ConnectError).rawMessage;
  }
  throw new Error("accepted");
}

describe("pageNewestFirst", () => {
  it("lists newest first, ties by id, page by page until an empty token", () => {
    expect(all(2)).toEqual([["c", "e"], ["a", "b"], ["d"]]);
    expect(all(0)).toEqual([["c", "e", "a", "b", "d"]]);
    expect(all(5)).toEqual([["c", "e", "a", "b", "d"]]);
    expect(all(1, [])).toEqual([[]]);
  });

  it("continues after the last item seen when items come and go between pages", () => {
    const first = pageNewestFirst(items, cursor, { pageSize: 2, pageToken: "" });
    const changed = [...items.filter((i) => i.id !== "a"), { id: "z", t: 10n }, { id: "aa", t: 5n }];
    const next = pageNewestFirst(changed, cursor, { pageSize: 10, pageToken: first.nextPageToken });
    expect(next.items.map((i) => i.id)).toEqual(["aa", "b", "d"]);
  });

  it("rejects a page size over 1000 and a token it did not make, naming the field", () => {
    expect(invalid(() => pageNewestFirst(items, cursor, { pageSize: 1001, pageToken: "" }))).toMatch(
      /^page_size/,
    );
    expect(invalid(() => pageNewestFirst(items, cursor, { pageSize: 1, pageToken: "garbage" }))).toMatch(
      /^page_token: malformed/,
    );
  });

  it("reads a Timestamp as nanoseconds", () => {
    expect(timestampNanos({ seconds: 2n, nanos: 5 })).toBe(2_000_000_005n);
    expect(timestampNanos(undefined)).toBe(0n);
  });
});
