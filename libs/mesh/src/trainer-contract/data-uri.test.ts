import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { parseDataUri } from "./data-uri.js";

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
