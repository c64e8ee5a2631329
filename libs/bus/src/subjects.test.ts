import { describe, expect, it } from "vitest";
import { checkFilter, checkLiteralSubject, filterUnder, SubjectMapper, subjectMatches } from "./subjects.js";

describe("subjects", () => {
  it("matches NATS wildcards: * one token, > one or more trailing tokens", () => {
    expect(subjectMatches("idpo.events.>", "idpo.events.r1.pairs_ready")).toBe(true);
    expect(subjectMatches("idpo.events.>", "idpo.events")).toBe(false);
    expect(subjectMatches("idpo.events.*.pairs_ready", "idpo.events.r1.pairs_ready")).toBe(true);
    expect(subjectMatches("idpo.events.*.pairs_ready", "idpo.events.r1.eval_completed")).toBe(false);
    expect(subjectMatches("idpo.events.*", "idpo.events.r1.pairs_ready")).toBe(false);
    expect(subjectMatches("idpo.events.r1.pairs_ready", "idpo.events.r1.pairs_ready")).toBe(true);
    expect(subjectMatches("idpo.events.r1", "idpo.events.r1.pairs_ready")).toBe(false);
  });

  it("validates literal subjects and filters", () => {
    expect(() => checkLiteralSubject("idpo.events.r-1.kind")).not.toThrow();
    expect(() => checkLiteralSubject("idpo.events.*.kind")).toThrow(/invalid token "\*"/);
    expect(() => checkLiteralSubject("idpo..x")).toThrow(/invalid token ""/);
    expect(() => checkFilter("idpo.events.*.k")).not.toThrow();
    expect(() => checkFilter("idpo.>.k")).toThrow(/">" must be the last token/);
  });

  it("tells whether a filter stays under a root", () => {
    expect(filterUnder("idpo.events.>", "idpo.events")).toBe(true);
    expect(filterUnder("idpo.events.r1.*", "idpo.events")).toBe(true);
    expect(filterUnder("idpo.>", "idpo.events")).toBe(false);
    expect(filterUnder("idpo.events", "idpo.events")).toBe(false);
  });

  it("maps logical subjects to prefixed physical ones and back", () => {
    const m = new SubjectMapper("t1");
    expect(m.toPhysical("idpo.events.r.k")).toBe("t1.idpo.events.r.k");
    expect(m.toLogical("t1.idpo.events.r.k")).toBe("idpo.events.r.k");
    expect(() => m.toLogical("idpo.events.r.k")).toThrow(/lacks the bus prefix/);
    expect(new SubjectMapper("").toPhysical("idpo.x")).toBe("idpo.x");
  });
});
