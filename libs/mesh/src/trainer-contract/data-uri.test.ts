import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { parseDataUri, windowedDataUri } from "./data-uri.js";

function rejection(uri: string, field = "x"): ConnectError {
  try {
    parseDataUri(uri, field);
  } catch (e) {
    expect(e).toBeInstanceOf(ConnectError);
    expect((e as ConnectError).code).toBe(Code.InvalidArgument);
    return e as ConnectError;
  }
  throw new Error(`parseDataUri accepted ${uri}`);
}

describe("parseDataUri", () => {
  it("parses the three forms", () => {
    expect(parseDataUri("file:///data/pairs/", "d")).toEqual({
      kind: "file",
      uri: "file:///data/pairs/",
      dir: "/data/pairs",
    });
    expect(parseDataUri("artifact://runs/r1/iter-2/", "d")).toEqual({
      kind: "artifact",
      uri: "artifact://runs/r1/iter-2/",
      prefix: "runs/r1/iter-2/",
    });
    expect(parseDataUri("shapes://?pairs=100&size=32", "d")).toEqual({
      kind: "shapes",
      uri: "shapes://?pairs=100&size=32",
      pairs: 100,
      size: 32,
      seed: 0,
    });
    expect(parseDataUri("shapes://?pairs=1000000&size=256&seed=4294967295", "d")).toMatchObject({
      pairs: 1_000_000,
      size: 256,
      seed: 4294967295,
    });
  });

  it("reads a window of any form from its fragment", () => {
    expect(parseDataUri("shapes://?pairs=100&size=16#skip=90&take=20", "d")).toEqual({
      kind: "shapes",
      uri: "shapes://?pairs=100&size=16#skip=90&take=20",
      pairs: 100,
      size: 16,
      seed: 0,
      window: { skip: 90, take: 20 },
    });
    expect(parseDataUri("file:///data/pairs#take=5", "d")).toEqual({
      kind: "file",
      uri: "file:///data/pairs#take=5",
      dir: "/data/pairs",
      window: { skip: 0, take: 5 },
    });
    expect(parseDataUri("artifact://runs/r1/#skip=1&take=2", "d")).toMatchObject({
      prefix: "runs/r1/",
      window: { skip: 1, take: 2 },
    });
    const uri = windowedDataUri("shapes://?pairs=3000&size=16&seed=7", { skip: 768, take: 384 });
    expect(uri).toBe("shapes://?pairs=3000&size=16&seed=7#skip=768&take=384");
    expect(parseDataUri(uri, "d").window).toEqual({ skip: 768, take: 384 });
    expect(() => windowedDataUri(uri, { skip: 0, take: 1 })).toThrow(/already has a fragment/);
  });

  it("rejects malformed windows, naming the parameter", () => {
    expect(rejection("shapes://?pairs=10&size=16#skip=2").rawMessage).toMatch(/^x: window needs take=/);
    expect(rejection("file:///d#take=0").rawMessage).toMatch(/^x: take=0 is outside \[1, 1000000\]/);
    expect(rejection("file:///d#take=3&offset=1").rawMessage).toMatch(/unknown window parameter "offset"/);
    expect(rejection("file:///d#take=-1").rawMessage).toMatch(/not a non-negative integer/);
    expect(rejection("s3://b#take=1").rawMessage).toMatch(/^x: unsupported data URI/);
  });

  it("rejects malformed URIs, the message starting with the field", () => {
    expect(rejection("shapes://?pairs=10&size=16&colour=red", "spec.data[2]").rawMessage).toMatch(
      /^spec\.data\[2\]: unknown shapes parameter/,
    );
    expect(rejection("shapes://?pairs=10&size=3").rawMessage).toMatch(/^x: size=3 is outside/);
    expect(rejection("shapes://?pairs=1000001&size=16").rawMessage).toMatch(/^x: pairs=1000001 is outside/);
    expect(rejection("shapes://?pairs=10&size=16&seed=4294967296").rawMessage).toMatch(/^x: seed=/);
    expect(rejection("shapes://?size=16").rawMessage).toMatch(/^x: shapes URI needs pairs=/);
    expect(rejection("shapes://?pairs=1e3&size=16").rawMessage).toMatch(/not a non-negative integer/);
    expect(rejection("artifact://").rawMessage).toMatch(/needs a prefix/);
    expect(rejection("artifact://a/../b").rawMessage).toMatch(/artifact prefix/);
    expect(rejection("file://host/dir").rawMessage).toMatch(/empty host/);
    expect(rejection("file:///").rawMessage).toMatch(/absolute directory/);
    expect(rejection("file:///a%ZZ").rawMessage).toMatch(/^x: "file:\/\/\/a%ZZ" is not a valid file URI/);
    expect(rejection("s3://bucket").rawMessage).toMatch(/^x: unsupported data URI/);
    expect(rejection("", "config.dataset").rawMessage).toMatch(/^config\.dataset: required/);
  });
});
