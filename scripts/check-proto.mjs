#!/usr/bin/env node
// Contract checks run by `npm test`: buf lint, generated code up to date, no breaking change against main.
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";

const root = new URL("..", import.meta.url).pathname;
const buf = join(root, "node_modules/.bin/buf");

function run(args, what) {
  const r = spawnSync(buf, args, { cwd: root, encoding: "utf8" });
  if (r.status !== 0) {
    process.stderr.write(`check-proto: ${what} failed\n${r.stdout}${r.stderr}`);
    process.exit(1);
  }
}

function listFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out;
}

run(["lint"], "buf lint");

const tmp = mkdtempSync(join(tmpdir(), "idpo-proto-"));
try {
  run(["generate", "-o", tmp], "buf generate");
  const fresh = join(tmp, "libs/proto/src/gen");
  const committed = join(root, "libs/proto/src/gen");
  const a = listFiles(fresh)
    .map((f) => relative(fresh, f))
    .sort();
  const b = listFiles(committed)
    .map((f) => relative(committed, f))
    .sort();
  const stale = [];
  if (a.join("\n") !== b.join("\n")) stale.push(`file list differs: generated [${a}] vs committed [${b}]`);
  for (const f of a) {
    if (b.includes(f) && readFileSync(join(fresh, f), "utf8") !== readFileSync(join(committed, f), "utf8")) {
      stale.push(f);
    }
  }
  if (stale.length > 0) {
    process.stderr.write(
      `check-proto: generated code is stale (run \`npm run generate\`):\n  ${stale.join("\n  ")}\n`,
    );
    process.exit(1);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// Breaking-change check against the main branch, when main already has contracts to compare with.
let mainHasProto = false;
try {
  mainHasProto =
    execFileSync("git", ["ls-tree", "-d", "main", "proto/idpo"], { cwd: root, encoding: "utf8" }).trim() !==
    "";
} catch {
  mainHasProto = false;
}
if (mainHasProto) {
  run(["breaking", "--against", ".git#branch=main"], "buf breaking against main");
  console.log("check-proto: lint ok, generated code current, no breaking change against main");
} else {
  console.log(
    "check-proto: lint ok, generated code current (main has no contracts yet: breaking check skipped)",
  );
}
