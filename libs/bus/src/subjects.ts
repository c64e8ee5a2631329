/** Root of run-event subjects: `idpo.events.<runId>.<kind>`. */
export const EVENTS_ROOT = "idpo.events";
/** Root of termination reports: `idpo.reports.<events|work>.<consumer>`. */
export const REPORTS_ROOT = "idpo.reports";
/** Root of work-queue subjects: `idpo.work.<queue>`. */
export const WORK_ROOT = "idpo.work";

const TOKEN = /^[A-Za-z0-9_=:@-]+$/;
const NAME = /^[A-Za-z0-9_-]+$/;

/** True if `token` can be one subject token (no dots, wildcards or whitespace). */
export function isSubjectToken(token: string): boolean {
  return TOKEN.test(token);
}

/** Throws unless `token` can be one subject token. `what` names it in the message. */
export function checkSubjectToken(token: string, what: string): void {
  if (!isSubjectToken(token)) {
    throw new Error(`${what} "${token}" is not a valid subject token: use letters, digits and _=:@- only`);
  }
}

/** Throws unless `name` is a valid stream/consumer/bucket name part ([A-Za-z0-9_-]+). */
export function checkName(name: string, what: string): void {
  if (!NAME.test(name)) throw new Error(`${what} "${name}" must match [A-Za-z0-9_-]+`);
}

/** Throws unless `subject` is a literal subject (tokens only, no wildcards). */
export function checkLiteralSubject(subject: string): void {
  const tokens = subject.split(".");
  for (const t of tokens) {
    if (!isSubjectToken(t)) throw new Error(`subject "${subject}" has an invalid token "${t}"`);
  }
}

/** Throws unless `filter` is a valid subject filter (`*` a whole token, `>` only last). */
export function checkFilter(filter: string): void {
  const tokens = filter.split(".");
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (t === "*") continue;
    if (t === ">") {
      if (i !== tokens.length - 1) throw new Error(`subject filter "${filter}": ">" must be the last token`);
      continue;
    }
    if (!isSubjectToken(t)) throw new Error(`subject filter "${filter}" has an invalid token "${t}"`);
  }
}

/** NATS subject matching: `*` matches one token, a final `>` one or more. */
export function subjectMatches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (i >= s.length) return false;
    if (f[i] !== "*" && f[i] !== s[i]) return false;
  }
  return f.length === s.length;
}

/** True if every subject matched by `filter` lies under `root` (e.g. `idpo.events.*.x` under `idpo.events`). */
export function filterUnder(filter: string, root: string): boolean {
  const r = root.split(".");
  const f = filter.split(".");
  if (f.length <= r.length) return false;
  for (let i = 0; i < r.length; i++) if (f[i] !== r[i]) return false;
  return true;
}

/** Maps logical subjects (`idpo.events...`) to physical ones (`<prefix>.idpo.events...`) and back, so that
 * several isolated buses (tests, tenants) can share one server. */
export class SubjectMapper {
  private readonly head: string;
  constructor(prefix: string) {
    this.head = prefix ? `${prefix}.` : "";
  }
  toPhysical(subject: string): string {
    return this.head + subject;
  }
  toLogical(subject: string): string {
    if (!subject.startsWith(this.head))
      throw new Error(`subject "${subject}" lacks the bus prefix "${this.head}"`);
    return subject.slice(this.head.length);
  }
}
