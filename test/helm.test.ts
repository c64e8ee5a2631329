import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type HelmResult,
  type K8sObject,
  lintChart,
  type RenderOptions,
  renderChart,
  repoRoot,
  type StagedChart,
  stageChart,
  templateRaw,
  validateK8sObject,
} from "./support/helm.js";

const CHART = join(repoRoot, "helm", "idpo");
const RELEASE = "idpo";
const NAMESPACE = "idpo";

const SERVICES = ["controller", "generator", "improver", "scorer", "trainer"] as const;
type ServiceName = (typeof SERVICES)[number];
const PORTS: Record<ServiceName, number> = {
  generator: 50051,
  improver: 50052,
  trainer: 50053,
  scorer: 50054,
  controller: 50055,
};

/** A values set rendered by the tests, with what it must produce. */
interface ValueSet {
  name: string;
  /** Values files relative to the chart. */
  files: string[];
  /** nvidia.com/gpu limit expected per service; services absent here must request no GPU. */
  gpus: Partial<Record<ServiceName, number>>;
  /** IDPO_NATS_URL every container must get. */
  natsUrl: string;
  /** IDPO_NATS_REPLICAS every container must get. */
  streamReplicas: string;
  /** IDPO_BUS_PREFIX, when the set gives one. */
  busPrefix?: string;
  /** Services whose pods carry the inference sidecar (which then holds the GPU). */
  sidecars: ServiceName[];
}

/** Port of the inference sidecar container. */
const INFERENCE_PORT = 50056;

const BUNDLED_NATS = `nats://${RELEASE}-nats.${NAMESPACE}.svc.cluster.local:4222`;
const VALUE_SETS: ValueSet[] = [
  {
    name: "defaults",
    files: [],
    gpus: { generator: 1, improver: 1, trainer: 1 },
    natsUrl: BUNDLED_NATS,
    streamReplicas: "1",
    sidecars: ["generator", "improver"],
  },
  {
    name: "cpu-only",
    files: ["ci/cpu-only-values.yaml"],
    gpus: {},
    natsUrl: "nats://nats.nats.svc.cluster.local:4222",
    streamReplicas: "1",
    sidecars: ["generator"],
  },
  {
    name: "gpu-tolerations",
    files: ["ci/gpu-tolerations-values.yaml"],
    gpus: { generator: 1, improver: 1, trainer: 2 },
    natsUrl: BUNDLED_NATS,
    streamReplicas: "1",
    sidecars: ["generator", "improver"],
  },
  {
    name: "autoscaling",
    files: ["ci/autoscaling-values.yaml"],
    gpus: { generator: 1, improver: 1, trainer: 1 },
    natsUrl: BUNDLED_NATS,
    streamReplicas: "3",
    busPrefix: "prod",
    sidecars: ["generator", "improver"],
  },
];

// The real NATS chart is only present after `helm dependency build helm/idpo` (it needs the chart repo).
const natsVendored =
  existsSync(join(CHART, "charts")) && readdirSync(join(CHART, "charts")).some((f) => f.startsWith("nats-"));

let staged: StagedChart;
const rendered = new Map<string, K8sObject[]>();
const linted = new Map<string, HelmResult>();

// Every helm run is independent: start them all at once rather than one after another.
beforeAll(async () => {
  staged = stageChart(CHART);
  await Promise.all(
    VALUE_SETS.flatMap((set) => [
      renderChart(staged.dir, { valuesFiles: set.files, release: RELEASE, namespace: NAMESPACE }).then(
        (objs) => rendered.set(set.name, objs),
      ),
      lintChart(staged.dir, { valuesFiles: set.files }).then((res) => linted.set(set.name, res)),
    ]),
  );
});

afterAll(() => {
  staged?.cleanup();
});

function objectsOf(set: string): K8sObject[] {
  const objs = rendered.get(set);
  if (objs === undefined) throw new Error(`value set ${set} was not rendered`);
  return objs;
}

/** Objects of this chart (not of the bundled NATS chart). */
function ownObjects(set: string): K8sObject[] {
  return objectsOf(set).filter((o) => o.metadata.labels?.["app.kubernetes.io/name"] === "idpo");
}

function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const found = objs.filter((o) => o.kind === kind && o.metadata.name === name);
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name}, found ${found.length}`);
  return found[0]!;
}

// biome-ignore lint/suspicious/noExplicitAny: containers come from parsed manifests.
type Container = any;

/** The service's own container (its pod may also hold the inference sidecar, and nothing else). */
function containerOf(deploy: K8sObject): Container {
  const svc = deploy.metadata.labels?.["app.kubernetes.io/component"];
  const containers = deploy.spec.template.spec.containers as Container[];
  const own = containers.filter((c) => c.name === svc);
  expect(own).toHaveLength(1);
  expect(containers.filter((c) => c.name !== svc).map((c) => c.name)).toEqual(
    sidecarOf(deploy) ? ["inference"] : [],
  );
  return own[0];
}

/** The pod's inference sidecar container, if it has one. */
function sidecarOf(deploy: K8sObject): Container | undefined {
  return (deploy.spec.template.spec.containers as Container[]).find((c) => c.name === "inference");
}

function envOf(container: Container, name: string): string | undefined {
  const matches = (container.env ?? []).filter((e: { name: string }) => e.name === name);
  expect(matches.length, `env ${name} set at most once`).toBeLessThanOrEqual(1);
  return matches[0]?.value;
}

describe("helm/idpo chart", () => {
  it("has exactly the value sets under ci/ that these tests render", () => {
    const files = readdirSync(join(CHART, "ci")).sort();
    const tested = VALUE_SETS.flatMap((s) => s.files.map((f) => f.replace(/^ci\//, ""))).sort();
    expect(files).toEqual(tested);
  });

  it("stands in for the NATS dependency only when it is not vendored", () => {
    expect(staged.realNats).toBe(natsVendored);
  });

  for (const set of VALUE_SETS) {
    describe(`values: ${set.name}`, () => {
      it("passes helm lint --strict", () => {
        const res = linted.get(set.name);
        const output = `${res?.stdout}${res?.stderr}`;
        expect(output).toContain("1 chart(s) linted, 0 chart(s) failed");
        expect(output).not.toMatch(/\[(WARNING|ERROR)\]/);
        expect(res?.code).toBe(0);
      });

      it("renders only valid Kubernetes objects", () => {
        const objs = objectsOf(set.name);
        expect(objs.length).toBeGreaterThan(0);
        for (const obj of objs) validateK8sObject(obj);
        if (!staged.realNats) expect(ownObjects(set.name)).toHaveLength(objs.length);
      });

      it("labels every object with the app.kubernetes.io set", () => {
        for (const obj of ownObjects(set.name)) {
          const labels = obj.metadata.labels ?? {};
          expect(labels["app.kubernetes.io/instance"], `${obj.kind} ${obj.metadata.name}`).toBe(RELEASE);
          expect(labels["app.kubernetes.io/managed-by"]).toBe("Helm");
          expect(labels["app.kubernetes.io/part-of"]).toBe("idpo");
          expect(labels["app.kubernetes.io/version"]).toMatch(/^\d+\.\d+\.\d+/);
          expect(labels["helm.sh/chart"]).toMatch(/^idpo-\d+\.\d+\.\d+/);
          expect(obj.metadata.namespace).toBe(NAMESPACE);
        }
      });

      it("gives each service a Deployment, a Service, a headless Service and a PodDisruptionBudget", () => {
        const objs = ownObjects(set.name);
        for (const svc of SERVICES) {
          const name = `${RELEASE}-${svc}`;
          const deploy = find(objs, "Deployment", name);
          const podLabels = deploy.spec.template.metadata.labels as Record<string, string>;
          const selector = deploy.spec.selector.matchLabels as Record<string, string>;
          expect(selector).toEqual({
            "app.kubernetes.io/name": "idpo",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": svc,
          });
          expect(podLabels).toMatchObject(selector);
          expect(deploy.metadata.labels?.["app.kubernetes.io/component"]).toBe(svc);

          const service = find(objs, "Service", name);
          expect(service.spec.type ?? "ClusterIP").toBe("ClusterIP");
          expect(service.spec.clusterIP).toBeUndefined();
          const headless = find(objs, "Service", `${name}-headless`);
          expect(headless.spec.clusterIP).toBe("None");
          expect(headless.spec.publishNotReadyAddresses).toBe(false);
          for (const s of [service, headless]) {
            expect(s.spec.selector).toEqual(selector);
            expect(s.spec.ports).toEqual([
              {
                name: "grpc",
                port: PORTS[svc],
                targetPort: "grpc",
                protocol: "TCP",
                appProtocol: "kubernetes.io/h2c",
              },
            ]);
          }

          const pdb = find(objs, "PodDisruptionBudget", name);
          expect(pdb.spec.selector.matchLabels).toEqual(selector);
          const budget = pdb.spec.maxUnavailable ?? pdb.spec.minAvailable;
          expect(budget, `${name} PDB sets one budget`).toBeDefined();
          expect("maxUnavailable" in pdb.spec && "minAvailable" in pdb.spec).toBe(false);
        }
        expect(objs.filter((o) => o.kind === "Deployment")).toHaveLength(SERVICES.length);
      });

      it("puts nvidia.com/gpu limits exactly on the GPU services, on the container that holds the weights", () => {
        const objs = ownObjects(set.name);
        for (const svc of SERVICES) {
          const deploy = find(objs, "Deployment", `${RELEASE}-${svc}`);
          const c = containerOf(deploy);
          const sidecar = sidecarOf(deploy);
          expect(sidecar !== undefined, `${svc} sidecar`).toBe(set.sidecars.includes(svc));
          const expected = set.gpus[svc];
          const holder = sidecar ?? c;
          expect(holder.resources.limits?.["nvidia.com/gpu"], `${svc} GPU limit`).toBe(expected);
          if (sidecar) expect(c.resources.limits?.["nvidia.com/gpu"], `${svc} app GPU limit`).toBeUndefined();
          for (const x of sidecar ? [c, sidecar] : [c]) {
            expect(x.resources.requests?.["nvidia.com/gpu"], `${svc} GPU request`).toBeUndefined();
            const flavour = expected === undefined ? "cpu" : "gpu";
            expect(x.image, `${svc} image flavour`).toMatch(new RegExp(`(-${flavour}$|@sha256:)`));
          }
          const appGpu = expected !== undefined && !sidecar;
          expect(envOf(c, "IDPO_TF_BACKEND")).toBe(appGpu ? "tensorflow-gpu" : "wasm");
          if (sidecar)
            expect(envOf(sidecar, "IDPO_INFERENCE_PROVIDER")).toBe(expected === undefined ? "cpu" : "cuda");
        }
        const gpuObjects = objs.filter((o) => JSON.stringify(o).includes('nvidia.com/gpu":'));
        expect(gpuObjects.map((o) => o.metadata.name).sort()).toEqual(
          Object.keys(set.gpus)
            .map((s) => `${RELEASE}-${s}`)
            .sort(),
        );
      });

      it("probes every container natively over grpc.health.v1 and requests resources", () => {
        const objs = ownObjects(set.name);
        const deployments = objs.filter((o) => o.kind === "Deployment");
        for (const deploy of deployments) {
          const svc = deploy.metadata.labels?.["app.kubernetes.io/component"] as ServiceName;
          const pod = deploy.spec.template.spec;
          for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
            const isSidecar = c.name === "inference";
            const port = isSidecar ? INFERENCE_PORT : PORTS[svc];
            expect(c.ports).toEqual([
              { name: isSidecar ? "grpc-inference" : "grpc", containerPort: port, protocol: "TCP" },
            ]);
            for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
              expect(c[probe]?.grpc?.port, `${svc} ${probe}`).toBe(port);
              expect(c[probe].httpGet ?? c[probe].tcpSocket ?? c[probe].exec).toBeUndefined();
            }
            // The startup probe must leave minutes for loading weights.
            expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(
              600,
            );
            expect(c.resources.requests.cpu, `${svc} cpu request`).toBeDefined();
            expect(c.resources.requests.memory, `${svc} memory request`).toBeDefined();
            expect(c.args).toEqual(["serve", isSidecar ? "inference" : svc]);
            expect(envOf(c, "IDPO_PORT")).toBe(String(port));
            expect(c.securityContext).toMatchObject({
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ["ALL"] },
            });
          }
          expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 10001 });
          expect(pod.enableServiceLinks).toBe(false);
        }
      });

      it("wires NATS, the peers and telemetry into every container", () => {
        const objs = ownObjects(set.name);
        for (const svc of SERVICES) {
          const c = containerOf(find(objs, "Deployment", `${RELEASE}-${svc}`));
          expect(envOf(c, "IDPO_NATS_URL")).toBe(set.natsUrl);
          expect(envOf(c, "IDPO_HOST")).toBe("0.0.0.0");
          expect(envOf(c, "OTEL_SERVICE_NAME")).toBe(`idpo-${svc}`);
          expect(envOf(c, "IDPO_NATS_REPLICAS")).toBe(set.streamReplicas);
          expect(envOf(c, "IDPO_BUS_PREFIX")).toBe(set.busPrefix);
          expect(envOf(c, "IDPO_IMPROVER_ADDR")).toBe(
            `dns:///${RELEASE}-improver-headless.${NAMESPACE}.svc.cluster.local:50052`,
          );
          expect(envOf(c, "IDPO_CONTROLLER_ADDR")).toBe(
            `http://${RELEASE}-controller.${NAMESPACE}.svc.cluster.local:50055`,
          );
          expect(envOf(c, "IDPO_LOG_LEVEL")).toMatch(/^(debug|info|warn|error)$/);
          const graceMs = Number(envOf(c, "IDPO_SHUTDOWN_GRACE_MS"));
          const pod = find(objs, "Deployment", `${RELEASE}-${svc}`).spec.template.spec;
          // Kubernetes must not SIGKILL before the service's own drain deadline.
          expect(pod.terminationGracePeriodSeconds * 1000).toBeGreaterThan(graceMs);
          // The sidecar reads checkpoints from the same bus, and the service reaches it over loopback.
          const sidecar = sidecarOf(find(objs, "Deployment", `${RELEASE}-${svc}`));
          if (sidecar) {
            expect(envOf(c, "IDPO_INFERENCE")).toBe("sidecar");
            expect(envOf(c, "IDPO_INFERENCE_ADDR")).toBe(`http://127.0.0.1:${INFERENCE_PORT}`);
            expect(envOf(sidecar, "IDPO_PORT")).toBe(String(INFERENCE_PORT));
            expect(envOf(sidecar, "IDPO_NATS_URL")).toBe(set.natsUrl);
            expect(envOf(sidecar, "IDPO_NATS_REPLICAS")).toBe(set.streamReplicas);
            expect(envOf(sidecar, "IDPO_BUS_PREFIX")).toBe(set.busPrefix);
            expect(envOf(sidecar, "IDPO_DATA_DIR")).toBe(envOf(c, "IDPO_DATA_DIR"));
            expect(envOf(sidecar, "IDPO_INFERENCE_THREADS")).toMatch(/^[1-9][0-9]*$/);
            expect(envOf(sidecar, "OTEL_SERVICE_NAME")).toBe(`idpo-${svc}-inference`);
            expect(sidecar.volumeMounts).toEqual(c.volumeMounts);
          } else {
            expect(envOf(c, "IDPO_INFERENCE")).toBeUndefined();
          }
        }
      });
    });
  }

  describe("value-set specifics", () => {
    it("cpu-only: external NATS with credentials and token from Secrets, OTLP export, no GPU scheduling", () => {
      const objs = ownObjects("cpu-only");
      for (const svc of SERVICES) {
        const deploy = find(objs, "Deployment", `${RELEASE}-${svc}`);
        const c = containerOf(deploy);
        expect(envOf(c, "IDPO_NATS_CREDS_FILE")).toBe("/var/run/secrets/idpo/nats/nats.creds");
        expect(c.env).toContainEqual({
          name: "IDPO_NATS_TOKEN",
          valueFrom: { secretKeyRef: { name: "idpo-nats-token", key: "token" } },
        });
        expect(c.volumeMounts).toContainEqual({
          name: "nats-credentials",
          mountPath: "/var/run/secrets/idpo/nats",
          readOnly: true,
        });
        expect(deploy.spec.template.spec.volumes).toContainEqual({
          name: "nats-credentials",
          secret: {
            secretName: "idpo-nats-creds",
            defaultMode: 0o440,
            items: [{ key: "nats.creds", path: "nats.creds" }],
          },
        });
        expect(envOf(c, "OTEL_EXPORTER_OTLP_ENDPOINT")).toBe(
          "http://otel-collector.observability.svc.cluster.local:4318",
        );
        expect(envOf(c, "IDPO_LOG_LEVEL")).toBe("debug");
        expect(envOf(c, "CUDA_CACHE_PATH")).toBeUndefined();
        expect(deploy.spec.template.spec.runtimeClassName).toBeUndefined();
      }
    });

    it("gpu-tolerations: GPU runtime class, node selector and taints only on GPU pods", () => {
      const objs = ownObjects("gpu-tolerations");
      const gpuToleration = { key: "nvidia.com/gpu", operator: "Exists", effect: "NoSchedule" };
      const shared = { key: "dedicated", operator: "Equal", value: "idpo", effect: "NoSchedule" };
      for (const svc of SERVICES) {
        const pod = find(objs, "Deployment", `${RELEASE}-${svc}`).spec.template.spec;
        const isGpu = svc === "generator" || svc === "improver" || svc === "trainer";
        expect(pod.tolerations, `${svc} shared toleration`).toContainEqual(shared);
        if (isGpu) {
          expect(pod.runtimeClassName).toBe("nvidia");
          expect(pod.tolerations).toContainEqual(gpuToleration);
          expect(pod.nodeSelector).toMatchObject({ "nvidia.com/gpu.present": "true" });
        } else {
          expect(pod.runtimeClassName).toBeUndefined();
          expect(pod.tolerations).not.toContainEqual(gpuToleration);
          expect(pod.nodeSelector).toBeUndefined();
        }
        expect(pod.volumes).toContainEqual({
          name: "data",
          persistentVolumeClaim: { claimName: `${RELEASE}-data` },
        });
        const c = containerOf(find(objs, "Deployment", `${RELEASE}-${svc}`));
        expect(envOf(c, "IDPO_AUTH_TOKENS_FILE")).toBe("/var/run/secrets/idpo/auth/tokens");
        expect(c.env).toContainEqual({
          name: "IDPO_AUTH_TOKEN",
          valueFrom: { secretKeyRef: { name: "idpo-auth", key: "peer-token" } },
        });
      }
      const trainer = find(objs, "Deployment", `${RELEASE}-trainer`).spec.template.spec;
      expect(trainer.tolerations).toEqual([
        shared,
        gpuToleration,
        { key: "workload", operator: "Equal", value: "training", effect: "NoSchedule" },
      ]);
      expect(trainer.nodeSelector).toEqual({
        "nvidia.com/gpu.present": "true",
        "node.kubernetes.io/instance-type": "p5.48xlarge",
      });
      expect(containerOf(find(objs, "Deployment", `${RELEASE}-generator`)).image).toBe(
        "registry.example.com/ml/idpo@sha256:0000000000000000000000000000000000000000000000000000000000000001",
      );
      expect(containerOf(find(objs, "Deployment", `${RELEASE}-scorer`)).image).toBe(
        "registry.example.com/ml/idpo:0.1.0-cpu",
      );
      const pvc = find(objs, "PersistentVolumeClaim", `${RELEASE}-data`);
      expect(pvc.spec).toMatchObject({
        accessModes: ["ReadWriteMany"],
        storageClassName: "standard-rwx",
        resources: { requests: { storage: "500Gi" } },
      });
      expect(pvc.metadata.annotations?.["helm.sh/resource-policy"]).toBe("keep");
      const ingress = find(objs, "Ingress", `${RELEASE}-improver`);
      expect(ingress.spec.rules[0].http.paths[0].backend.service).toEqual({
        name: `${RELEASE}-improver`,
        port: { name: "grpc" },
      });
      expect(ingress.spec.tls).toEqual([
        { hosts: ["improver.idpo.example.com"], secretName: "idpo-improver-tls" },
      ]);
    });

    it("autoscaling: KEDA on work-queue lag for the generator, an HPA for the improver", () => {
      const objs = ownObjects("autoscaling");
      const scaled = find(objs, "ScaledObject", `${RELEASE}-generator`);
      expect(scaled.spec.scaleTargetRef).toEqual({
        apiVersion: "apps/v1",
        kind: "Deployment",
        name: `${RELEASE}-generator`,
      });
      expect(scaled.spec).toMatchObject({ minReplicaCount: 1, maxReplicaCount: 8, pollingInterval: 10 });
      expect(scaled.spec.triggers).toEqual([
        {
          type: "nats-jetstream",
          metadata: {
            natsServerMonitoringEndpoint: `${RELEASE}-nats.${NAMESPACE}.svc.cluster.local:8222`,
            account: "$G",
            stream: "prod_IDPO_WORK",
            consumer: "shard-workers",
            lagThreshold: "4",
            activationLagThreshold: "1",
            useHttps: "false",
          },
        },
      ]);
      const hpa = find(objs, "HorizontalPodAutoscaler", `${RELEASE}-improver`);
      expect(hpa.spec).toMatchObject({ minReplicas: 1, maxReplicas: 6 });
      expect(hpa.spec.metrics[0].resource).toEqual({
        name: "cpu",
        target: { type: "Utilization", averageUtilization: 60 },
      });
      // An autoscaled Deployment leaves replicas to its autoscaler, so upgrades do not reset the count.
      expect(find(objs, "Deployment", `${RELEASE}-generator`).spec.replicas).toBeUndefined();
      expect(find(objs, "Deployment", `${RELEASE}-improver`).spec.replicas).toBeUndefined();
      expect(find(objs, "Deployment", `${RELEASE}-controller`).spec.replicas).toBe(2);
      expect(find(objs, "PodDisruptionBudget", `${RELEASE}-controller`).spec).toMatchObject({
        minAvailable: 1,
      });
      expect(
        objs.filter((o) => o.kind === "ScaledObject" || o.kind === "HorizontalPodAutoscaler"),
      ).toHaveLength(2);
    });

    it("defaults: no autoscaler, no claim, no ingress", () => {
      const kinds = new Set(ownObjects("defaults").map((o) => o.kind));
      expect([...kinds].sort()).toEqual(["Deployment", "PodDisruptionBudget", "Service", "ServiceAccount"]);
    });

    it.skipIf(!natsVendored)("bundled NATS: JetStream on file storage with sync_interval always", () => {
      const config = objectsOf("defaults").find(
        (o) => o.kind === "ConfigMap" && o.metadata.name === `${RELEASE}-nats`,
      );
      expect(config, "the NATS chart's ConfigMap").toBeDefined();
      const conf = JSON.stringify(config);
      expect(conf).toContain("sync_interval");
      expect(conf).toContain("always");
      expect(conf).toContain("store_dir");
    });
  });

  describe("schema", () => {
    const cases: Record<string, { lint?: boolean; opts: RenderOptions }> = {
      negativeReplicas: { lint: true, opts: { set: ["services.generator.replicas=-1"] } },
      unknownService: { lint: true, opts: { set: ["services.painter.replicas=1"] } },
      misspelt: { opts: { set: ["services.scorer.replica=2", "loglevel=debug"] } },
      zeroGpusAndTrainerScaling: {
        opts: {
          set: [
            "services.generator.gpu.count=0",
            "services.trainer.autoscaling.mode=hpa",
            "services.trainer.autoscaling.minReplicas=1",
          ],
        },
      },
      noNats: { opts: { set: ["nats.enabled=false"] } },
      externalNats: { opts: { set: ["nats.enabled=false", "bus.url=nats://nats.example:4222"] } },
      kedaExternalNats: {
        opts: {
          set: [
            "nats.enabled=false",
            "bus.url=nats://nats.example:4222",
            "services.generator.autoscaling.mode=keda",
          ],
        },
      },
    };
    const templated = new Map<string, HelmResult>();
    const lintedCases = new Map<string, HelmResult>();

    beforeAll(async () => {
      await Promise.all(
        Object.entries(cases).flatMap(([name, c]) => [
          templateRaw(staged.dir, c.opts).then((r) => templated.set(name, r)),
          ...(c.lint ? [lintChart(staged.dir, c.opts).then((r) => lintedCases.set(name, r))] : []),
        ]),
      );
    });

    function result(name: string, from = templated): HelmResult {
      const r = from.get(name);
      if (r === undefined) throw new Error(`case ${name} did not run`);
      return r;
    }

    it("rejects a negative replica count", () => {
      const tpl = result("negativeReplicas");
      expect(tpl.code).not.toBe(0);
      expect(tpl.stderr).toContain("services.generator.replicas: Must be greater than or equal to 0");
      const lint = result("negativeReplicas", lintedCases);
      expect(lint.code).not.toBe(0);
      expect(lint.stdout + lint.stderr).toContain("services.generator.replicas");
    });

    it("rejects an unknown service key", () => {
      const tpl = result("unknownService");
      expect(tpl.code).not.toBe(0);
      expect(tpl.stderr).toContain("services: Additional property painter is not allowed");
      expect(result("unknownService", lintedCases).code).not.toBe(0);
    });

    it("rejects a misspelt key inside a service and at the top level", () => {
      const res = result("misspelt");
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain("services.scorer: Additional property replica is not allowed");
      expect(res.stderr).toContain("(root): Additional property loglevel is not allowed");
    });

    it("rejects zero GPUs on a GPU service and autoscaling on the trainer", () => {
      const res = result("zeroGpusAndTrainerScaling");
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain("services.generator.gpu.count");
      expect(res.stderr).toContain("services.trainer.autoscaling.mode");
    });

    it("requires a NATS server: bundled or bus.url", () => {
      const none = result("noNats");
      expect(none.code).not.toBe(0);
      expect(none.stderr).toContain("bus.url");
      const external = result("externalNats");
      expect(external.code, external.stderr).toBe(0);
    });

    it("asks for the monitoring endpoint when KEDA watches an external NATS server", () => {
      const res = result("kedaExternalNats");
      expect(res.code).not.toBe(0);
      expect(res.stderr).toContain("set bus.monitoringEndpoint");
    });
  });
});
