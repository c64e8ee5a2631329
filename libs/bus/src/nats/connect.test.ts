import { describe, expect, it } from "vitest";
import { parseServers } from "./connect.js";

describe("NATS URL parsing", () => {
  it("splits server lists and takes user:password out of the URL", () => {
    expect(parseServers("nats://a:4222, b:4223")).toEqual({
      servers: ["nats://a:4222", "nats://b:4223"],
      user: undefined,
      pass: undefined,
    });
    expect(parseServers("nats://idpo:p%40ss@nats.svc:4222")).toEqual({
      servers: ["nats://nats.svc:4222"],
      user: "idpo",
      pass: "p@ss",
    });
  });

  it("names a URL it cannot use", () => {
    expect(() => parseServers(" , ")).toThrow(/names no server/);
    expect(() => parseServers("nats://[bad")).toThrow(/"nats:\/\/\[bad" is not a valid URL/);
  });
});
