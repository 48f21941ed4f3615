import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ConfigMap, Namespace, Secret, Service } from "kubernetes-models/v1";
import { parse as parseToml } from "smol-toml";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { connectionAllowed, covered, type Peer } from "./network-policy.ts";
import {
  container,
  containers,
  envValue,
  find,
  findGenerated,
  type K8sObject,
  LOCAL_OVERLAY,
  render,
  repoRoot,
  runSeed,
  workloads,
} from "./render.ts";
import { FieldChecker } from "./schema-fields.ts";

const KUMO_IMAGE = "ghcr.io/kumocorp/kumomta:2026.06.23-f3af1cd0";
const TILT_BUILT_IMAGE = "kumomta-tilt-sink";
const TILT_BUILT_IMAGES = [TILT_BUILT_IMAGE, "kumomta-tilt-console"];
const MODELS: Record<string, new (data: K8sObject) => { validate(): void }> = {
  Namespace,
  ConfigMap,
  Secret,
  Service,
  StatefulSet,
  Deployment,
  NetworkPolicy,
};
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

let objects: K8sObject[];
let overlay: K8sObject;

beforeAll(async () => {
  // The real seed, into the working tree (idempotent: existing credentials are kept), as on a fresh clone.
  const seeded = await runSeed(repoRoot, ["--quiet"]);
  expect(seeded.exitCode, seeded.stderr).toBe(0);
  objects = await render(repoRoot);
  overlay = parseYaml(await readFile(path.join(repoRoot, LOCAL_OVERLAY, "kustomization.yaml"), "utf8"));
});

const podLabels = (w: K8sObject): Record<string, string> => w.spec.template.metadata.labels;
const selects = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);
/** The label the StatefulSet controller gives each pod: a Service selecting it targets one pod of `w`, any ordinal. */
const POD_NAME = "statefulset.kubernetes.io/pod-name";
const selectsWorkload = (selector: Record<string, string>, w: K8sObject) => {
  const { [POD_NAME]: podName, ...rest } = selector;
  const ordinalOf = w.kind === "StatefulSet" && podName?.match(new RegExp(`^${w.metadata.name}-(\\d+)$`));
  return (podName === undefined || Boolean(ordinalOf)) && selects(rest, podLabels(w));
};

describe("the local overlay renders valid Kubernetes objects", () => {
  it("renders every overlay under k8s/overlays", async () => {
    const overlays = (await readdir(path.join(repoRoot, "k8s/overlays"), { withFileTypes: true }))
      .filter((d) => d.isDirectory())
      .map((d) => `k8s/overlays/${d.name}`);
    expect(overlays).toContain(LOCAL_OVERLAY);
    for (const o of overlays) expect((await render(repoRoot, o)).length, o).toBeGreaterThan(0);
  });

  it("renders every part of the architecture, each object in the overlay's namespace", () => {
    const names = objects.map((o) => `${o.kind}/${o.metadata.name.replace(/-[a-z0-9]{10}$/, "")}`).sort();
    expect(names).toEqual(
      [
        "ConfigMap/kumo-network",
        "ConfigMap/kumo-policy",
        "ConfigMap/mx-dns",
        "ConfigMap/sink-config",
        "Deployment/console",
        "Deployment/dragonfly",
        "Deployment/mx-dns",
        "Deployment/sink",
        "Namespace/kumomta",
        "NetworkPolicy/console-egress",
        "NetworkPolicy/default-deny-egress-except-dns",
        "NetworkPolicy/default-deny-ingress",
        "NetworkPolicy/dragonfly-from-kumod",
        "NetworkPolicy/inject-job-egress",
        "NetworkPolicy/kumod-egress",
        "NetworkPolicy/kumod-from-console",
        "NetworkPolicy/kumod-from-inject-job",
        "NetworkPolicy/kumod-smtp-to-proxies",
        "NetworkPolicy/mx-dns-from-kumomta",
        "NetworkPolicy/proxy-from-kumod",
        "NetworkPolicy/proxy-smtp-to-sink",
        "NetworkPolicy/sink-http-from-any",
        "NetworkPolicy/sink-smtp-from-proxies",
        "NetworkPolicy/tsa-from-console",
        "NetworkPolicy/tsa-from-kumod",
        "Secret/dragonfly-auth",
        "Secret/kumo-http-auth",
        "Service/dragonfly",
        "Service/kumod",
        "Service/kumod-headless",
        "Service/mx-dns",
        "Service/proxy-0",
        "Service/proxy-1",
        "Service/proxy-2",
        "Service/proxy-3",
        "Service/proxy-headless",
        "Service/sink",
        "Service/tsa",
        "Service/tsa-headless",
        "StatefulSet/kumod",
        "StatefulSet/proxy",
        "StatefulSet/tsa",
      ].sort(),
    );
    for (const o of objects.filter((x) => x.kind !== "Namespace"))
      expect(o.metadata.namespace, `${o.kind}/${o.metadata.name}`).toBe(overlay.namespace);
    expect(find(objects, "Namespace", overlay.namespace)).toBeDefined();
  });

  it("passes kubernetes-models' API schema validation", () => {
    for (const o of objects) {
      const Model = MODELS[o.kind];
      expect(Model, `no validator for ${o.kind}`).toBeDefined();
      expect(
        () => new (Model as NonNullable<typeof Model>)(o).validate(),
        `${o.kind}/${o.metadata.name}`,
      ).not.toThrow();
    }
  });

  it("has no field the Kubernetes API does not define (kubernetes-models would let them through)", () => {
    const checker = new FieldChecker();
    const unknown = objects.flatMap((o) => checker.unknownFields(o).map((f) => `${o.kind}/${o.metadata.name}${f}`));
    expect(unknown).toEqual([]);
    const misspelt = structuredClone(find(objects, "StatefulSet", "kumod"));
    container(misspelt, "kumod").securityContext.readOnlyRootFileSystem = true;
    expect(checker.unknownFields(misspelt)).toEqual([
      ".spec.template.spec.containers[0].securityContext.readOnlyRootFileSystem",
    ]);
  });

  it("uses valid DNS names for objects, ports and containers", () => {
    for (const o of objects) {
      const pattern = o.kind === "Service" || o.kind === "Namespace" ? DNS1123_LABEL : DNS1123_SUBDOMAIN;
      expect(o.metadata.name, `${o.kind} name`).toMatch(pattern);
    }
    for (const w of workloads(objects))
      for (const c of containers(w)) {
        expect(c.name).toMatch(DNS1123_LABEL);
        for (const p of c.ports ?? []) expect(p.name, `${c.name} port`).toMatch(/^[a-z0-9-]{1,15}$/);
      }
  });

  it("labels every object, pod template and volume claim template as part of kumomta-tilt", () => {
    const partOf = (labels: Record<string, string> | undefined) => labels?.["app.kubernetes.io/part-of"];
    for (const o of objects) expect(partOf(o.metadata.labels), `${o.kind}/${o.metadata.name}`).toBe("kumomta-tilt");
    for (const w of workloads(objects)) {
      expect(partOf(podLabels(w))).toBe("kumomta-tilt");
      for (const t of w.spec.volumeClaimTemplates ?? []) expect(partOf(t.metadata.labels)).toBe("kumomta-tilt");
    }
  });
});

describe("objects refer to each other correctly", () => {
  it("selects each workload's pods with its own app.kubernetes.io/name, disjoint from every other workload", () => {
    for (const w of workloads(objects)) {
      const selector = w.spec.selector.matchLabels;
      expect(Object.keys(selector)).toEqual(["app.kubernetes.io/name"]);
      expect(selects(selector, podLabels(w))).toBe(true);
      for (const other of workloads(objects).filter((x) => x !== w))
        expect(selects(selector, podLabels(other)), `${w.metadata.name} selects ${other.metadata.name}`).toBe(false);
    }
  });

  it("points every Service at exactly one workload, on ports its container exposes", () => {
    for (const svc of objects.filter((o) => o.kind === "Service")) {
      const targets = workloads(objects).filter((w) => selectsWorkload(svc.spec.selector, w));
      expect(
        targets.map((w) => w.metadata.name),
        `Service/${svc.metadata.name}`,
      ).toHaveLength(1);
      const ports = containers(targets[0] as K8sObject).flatMap((c) => c.ports ?? []);
      for (const p of svc.spec.ports)
        expect(
          ports.some((cp: K8sObject) => cp.name === p.targetPort || cp.containerPort === p.targetPort),
          `Service/${svc.metadata.name} targetPort ${p.targetPort}`,
        ).toBe(true);
    }
  });

  it("probes only ports the container declares", () => {
    for (const w of workloads(objects))
      for (const c of containers(w)) {
        const names = (c.ports ?? []).map((p: K8sObject) => p.name);
        const numbers = (c.ports ?? []).map((p: K8sObject) => p.containerPort);
        for (const kind of ["startupProbe", "readinessProbe", "livenessProbe"]) {
          const probe = c[kind];
          if (!probe || probe.exec) continue;
          const port = (probe.httpGet ?? probe.tcpSocket).port;
          expect([...names, ...numbers], `${c.name} ${kind}`).toContain(port);
        }
      }
  });

  it("resolves every ConfigMap, Secret, key, volume and claim a pod refers to", () => {
    const configMaps = new Map(objects.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o]));
    const secrets = new Map(objects.filter((o) => o.kind === "Secret").map((o) => [o.metadata.name, o]));
    const keysOf = (o: K8sObject | undefined) => Object.keys({ ...o?.data, ...o?.stringData });
    for (const w of workloads(objects)) {
      const spec = w.spec.template.spec;
      const where = `${w.kind}/${w.metadata.name}`;
      const volumes = new Set([
        ...spec.volumes.map((v: K8sObject) => v.name),
        ...(w.spec.volumeClaimTemplates ?? []).map((t: K8sObject) => t.metadata.name),
      ]);
      for (const v of spec.volumes) {
        if (v.configMap) expect(configMaps.has(v.configMap.name), `${where} ConfigMap ${v.configMap.name}`).toBe(true);
        if (v.secret) expect(secrets.has(v.secret.secretName), `${where} Secret ${v.secret.secretName}`).toBe(true);
      }
      for (const c of containers(w)) {
        for (const m of c.volumeMounts ?? []) expect(volumes.has(m.name), `${where} mount ${m.name}`).toBe(true);
        for (const e of c.env ?? []) {
          const cm = e.valueFrom?.configMapKeyRef;
          const sec = e.valueFrom?.secretKeyRef;
          if (cm) expect(keysOf(configMaps.get(cm.name)), `${where} env ${e.name}`).toContain(cm.key);
          if (sec) expect(keysOf(secrets.get(sec.name)), `${where} env ${e.name}`).toContain(sec.key);
        }
      }
      if (w.kind === "StatefulSet") {
        const headless = find(objects, "Service", w.spec.serviceName);
        expect(headless.spec.clusterIP, `${where} serviceName`).toBe("None");
        expect(selects(headless.spec.selector, podLabels(w))).toBe(true);
      }
    }
    expect(keysOf(findGenerated(objects, "Secret", "kumo-http-auth")).sort()).toEqual(["password", "username"]);
  });

  it("puts every file of policy/ into the kumo-policy ConfigMap, and nothing else", async () => {
    const files = (await readdir(path.join(repoRoot, "policy"))).filter((f) => f !== "kustomization.yaml").sort();
    const keys = Object.keys(findGenerated(objects, "ConfigMap", "kumo-policy").data).sort();
    expect(keys).toEqual(files);
    expect(keys).toEqual(expect.arrayContaining(["init.lua", "tsa_init.lua", "shaping.toml", "queues.toml"]));
  });
});

describe("workloads follow the project's contracts and hardening", () => {
  it("pins every image to an explicit tag (the Tilt-built sink and console excepted)", () => {
    for (const w of workloads(objects))
      for (const c of containers(w)) {
        if (TILT_BUILT_IMAGES.includes(c.image)) continue;
        expect(c.image, c.name).toMatch(/^[^@]+:(?!latest$)[\w][\w.-]*$|@sha256:[0-9a-f]{64}$/);
      }
    expect(container(find(objects, "StatefulSet", "kumod"), "kumod").image).toBe(KUMO_IMAGE);
    expect(container(find(objects, "StatefulSet", "tsa"), "tsa").image).toBe(KUMO_IMAGE);
    expect(container(find(objects, "Deployment", "sink"), "sink").image).toBe(TILT_BUILT_IMAGE);
  });

  it("runs every container as a numeric non-root user with a read-only root filesystem and no capabilities", () => {
    for (const w of workloads(objects)) {
      const pod = w.spec.template.spec;
      expect(pod.securityContext.runAsNonRoot, w.metadata.name).toBe(true);
      expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
      expect(pod.securityContext.fsGroup).toBeGreaterThan(0);
      expect(pod.automountServiceAccountToken).toBe(false);
      for (const c of containers(w)) {
        expect(c.securityContext, c.name).toMatchObject({
          readOnlyRootFilesystem: true,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ["ALL"] },
        });
        expect(c.resources.limits.memory, c.name).toBeDefined();
        expect(c.resources.requests.memory, c.name).toBeDefined();
      }
    }
  });

  it("gives kumod the policy, credentials, spool and environment the policy expects", () => {
    const kumod = find(objects, "StatefulSet", "kumod");
    const c = container(kumod, "kumod");
    expect(c.command).toEqual(["/opt/kumomta/sbin/kumod", "--policy", "/opt/kumomta/etc/policy/init.lua"]);
    expect(kumod.spec.podManagementPolicy).toBe("Parallel");
    expect(kumod.spec.replicas).toBe(overlay.replicas.find((r: K8sObject) => r.name === "kumod").count);
    // tilt down must keep the spools: only `npm run reset` deletes them.
    expect(kumod.spec.persistentVolumeClaimRetentionPolicy?.whenDeleted ?? "Retain").toBe("Retain");
    const [spool] = kumod.spec.volumeClaimTemplates;
    expect(spool.metadata.name).toBe("spool");
    expect(spool.spec).not.toHaveProperty("storageClassName");
    const mounts = Object.fromEntries(c.volumeMounts.map((m: K8sObject) => [m.mountPath, m.name]));
    expect(mounts).toMatchObject({
      "/var/spool/kumomta": "spool",
      "/var/log/kumomta": "logs",
      "/opt/kumomta/etc/policy": "policy",
      "/opt/kumomta/etc/http-auth": "http-auth",
    });
    const env = Object.fromEntries(c.env.map((e: K8sObject) => [e.name, e]));
    expect(env.POD_NAMESPACE.valueFrom.fieldRef.fieldPath).toBe("metadata.namespace");
    expect(env.POD_NAME.valueFrom.fieldRef.fieldPath).toBe("metadata.name");
    expect(env.DRAGONFLY_PASSWORD.valueFrom.secretKeyRef).toMatchObject({ key: "password" });
    expect(env.DRAGONFLY_PASSWORD.valueFrom.secretKeyRef.name).toMatch(/^dragonfly-auth-/);
    for (const [name, value] of Object.entries({
      CLUSTER_DOMAIN: "cluster.local",
      TSA_PORT: "8008",
      SINK_SERVICE: "sink",
      SINK_SMTP_PORT: "2525",
      SINK_TLS: "Disabled",
      DRAGONFLY_SERVICE: "dragonfly",
      DRAGONFLY_PORT: "6379",
      KUMO_HTTP_AUTH_DIR: "/opt/kumomta/etc/http-auth",
      KUMO_NODE_ID_PATH: "/var/spool/kumomta/.nodeid",
    }))
      expect(env[name]?.value, name).toBe(value);
    // Each service the policy names by env exists under that name, on that port.
    expect(find(objects, "Service", "sink").spec.ports.map((p: K8sObject) => p.port)).toContain(2525);
    expect(find(objects, "Service", "dragonfly").spec.ports.map((p: K8sObject) => p.port)).toContain(6379);
    expect(find(objects, "Service", env.TSA_SERVICE.value).spec.ports[0].port).toBe(8008);
  });

  it("trusts only private ranges by default, never everything", () => {
    const trusted = findGenerated(objects, "ConfigMap", "kumo-network").data["trusted-hosts"].split(",");
    expect(trusted).toEqual(["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"]);
    for (const name of ["kumod", "tsa"]) {
      const ref = find(objects, "StatefulSet", name).spec.template.spec.containers[0].env.find(
        (e: K8sObject) => e.name === "KUMO_TRUSTED_HOSTS",
      ).valueFrom.configMapKeyRef;
      expect(ref.name).toMatch(/^kumo-network-/);
    }
  });

  it("probes kumod's readiness and startup on check-liveness but its liveness only on TCP", () => {
    const c = container(find(objects, "StatefulSet", "kumod"), "kumod");
    expect(c.readinessProbe.httpGet.path).toBe("/api/check-liveness/v1");
    expect(c.startupProbe.httpGet.path).toBe("/api/check-liveness/v1");
    expect(c.livenessProbe.tcpSocket.port).toBe("http");
    expect(c.livenessProbe.httpGet).toBeUndefined();
    // Shutdown: KumoMTA's own systemd unit allows 300 s; anything shorter risks SIGKILL mid-delivery.
    expect(find(objects, "StatefulSet", "kumod").spec.template.spec.terminationGracePeriodSeconds).toBe(300);
  });

  it("runs tsa-daemon with an explicit policy, /tsa/status probes and a state volume", () => {
    const tsa = find(objects, "StatefulSet", "tsa");
    const c = container(tsa, "tsa");
    expect(c.command).toEqual(["/opt/kumomta/sbin/tsa-daemon", "--policy", "/opt/kumomta/etc/policy/tsa_init.lua"]);
    expect(c.readinessProbe.httpGet.path).toBe("/tsa/status");
    expect(envValue(c, "TSA_STATE_DIR")).toBe("/var/lib/tsa");
    expect(c.volumeMounts.find((m: K8sObject) => m.mountPath === "/var/lib/tsa").name).toBe("state");
    expect(find(objects, "Service", tsa.spec.serviceName).spec.publishNotReadyAddresses).toBe(true);
  });

  it("sizes Dragonfly's maxmemory to its thread count and inside its memory limit", () => {
    const c = container(find(objects, "Deployment", "dragonfly"), "dragonfly");
    const flag = (name: string) => c.args.find((a: string) => a.startsWith(`--${name}=`))?.split("=")[1];
    const threads = Number(flag("proactor_threads"));
    const maxMiB = Number(/^(\d+)mb$/.exec(flag("maxmemory") ?? "")?.[1]);
    expect(threads).toBeGreaterThanOrEqual(1);
    expect(maxMiB).toBeGreaterThanOrEqual(threads * 256);
    expect(flag("dbfilename")).toBe("");
    const limitMiB = Number(/^(\d+)Mi$/.exec(c.resources.limits.memory)?.[1] ?? Number.NaN);
    expect(limitMiB).toBeGreaterThanOrEqual(maxMiB * 1.5);
    expect(c.env.find((e: K8sObject) => e.name === "DFLY_requirepass").valueFrom.secretKeyRef.key).toBe("password");
  });

  it("mounts the sink's rules as a directory (no subPath) with the env the sink reads", () => {
    const sink = find(objects, "Deployment", "sink");
    const c = container(sink, "sink");
    const config = c.volumeMounts.find((m: K8sObject) => m.mountPath === "/etc/sink");
    expect(config.subPath).toBeUndefined();
    expect(sink.spec.template.spec.volumes.find((v: K8sObject) => v.name === config.name).configMap.name).toBe(
      "sink-config",
    );
    expect(c.volumeMounts.map((m: K8sObject) => m.mountPath)).toContain("/tmp");
    expect(envValue(c, "SINK_CONFIG")).toBe("/etc/sink/sink.yaml");
    expect(envValue(c, "SINK_SMTP_PORT")).toBe("2525");
    expect(envValue(c, "SINK_HTTP_PORT")).toBe("8025");
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
    expect(c.livenessProbe.httpGet.path).toBe("/livez");
  });
});

/** sink-config's site-ports: the sink's SMTP port for each provider site, as kumod and the sink read it. */
function sitePortsOf(objects: K8sObject[]): Record<string, number> {
  const raw: string = findGenerated(objects, "ConfigMap", "sink-config").data["site-ports"];
  return Object.fromEntries(raw.split(",").map((e) => [e.split("=")[0], Number(e.split("=")[1])]));
}

describe("the sink's provider-site ports", () => {
  it("are read by kumod and the sink from one ConfigMap key", () => {
    for (const [kind, name, c] of [
      ["StatefulSet", "kumod", "kumod"],
      ["Deployment", "sink", "sink"],
    ] as const) {
      const env = container(find(objects, kind, name), c).env.find((e: K8sObject) => e.name === "SINK_SITE_PORTS");
      expect(env.valueFrom.configMapKeyRef, name).toEqual({ name: "sink-config", key: "site-ports" });
    }
    expect(Object.keys(sitePortsOf(objects)).sort()).toEqual(["google", "outlook", "yahoo"]);
  });

  it("are ports of the sink container and of its Service", () => {
    const containerPorts = container(find(objects, "Deployment", "sink"), "sink").ports.map(
      (p: K8sObject) => p.containerPort,
    );
    const service = find(objects, "Service", "sink").spec.ports;
    for (const [site, port] of Object.entries(sitePortsOf(objects))) {
      expect(containerPorts, site).toContain(port);
      expect(service.find((p: K8sObject) => p.port === port)?.targetPort, site).toBe(`smtp-${site}`);
    }
  });
});

describe("NetworkPolicies", () => {
  const pod = (name: string): Peer => ({ labels: podLabels(find(objects, ...workloadKey(name))) });
  const workloadKey = (name: string): [string, string] => [
    ["kumod", "tsa", "proxy"].includes(name) ? "StatefulSet" : "Deployment",
    name,
  ];
  const policies = () => objects.filter((o) => o.kind === "NetworkPolicy");
  const outside: Peer = {};

  it("cover every pod in both directions", () => {
    for (const w of workloads(objects)) {
      expect(covered(policies(), "Ingress", podLabels(w)), `${w.metadata.name} ingress`).toBe(true);
      expect(covered(policies(), "Egress", podLabels(w)), `${w.metadata.name} egress`).toBe(true);
    }
  });

  // The sink's HTTP port is open to peers outside the namespace (a cluster Prometheus); the workloads here have no
  // egress to it, since none of them needs it.
  it("let only kumod reach TSA, Dragonfly and the proxies, and only the proxies reach the sink's SMTP ports", () => {
    const names = ["kumod", "tsa", "dragonfly", "sink", "proxy"];
    const sitePorts = Object.values(sitePortsOf(objects));
    const expected = new Set([
      "kumod->tsa:8008",
      "kumod->dragonfly:6379",
      "kumod->proxy:5000",
      "proxy->sink:2525",
      ...sitePorts.map((p) => `proxy->sink:${p}`),
    ]);
    for (const to of names)
      for (const port of containers(find(objects, ...workloadKey(to))).flatMap((c) => c.ports ?? [])) {
        for (const from of names) {
          const key = `${from}->${to}:${port.containerPort}`;
          expect(connectionAllowed(policies(), pod(from), pod(to), port.containerPort), key).toBe(expected.has(key));
        }
        const fromOutside = connectionAllowed(policies(), outside, pod(to), port.containerPort);
        expect(fromOutside, `outside->${to}:${port.containerPort}`).toBe(to === "sink" && port.containerPort === 8025);
      }
  });

  it("let only kumod and tsa-daemon ask mx-dns", () => {
    for (const protocol of ["UDP", "TCP"]) {
      for (const from of ["kumod", "tsa"])
        expect(connectionAllowed(policies(), pod(from), pod("mx-dns"), 53, protocol), `${from} ${protocol}`).toBe(true);
      for (const from of ["sink", "dragonfly"])
        expect(connectionAllowed(policies(), pod(from), pod("mx-dns"), 53, protocol), `${from} ${protocol}`).toBe(
          false,
        );
      expect(connectionAllowed(policies(), outside, pod("mx-dns"), 53, protocol)).toBe(false);
    }
  });

  it("keep the mail inside the cluster: kumod and the proxies reach nothing outside but DNS", () => {
    for (const from of ["kumod", "proxy"]) {
      for (const port of [25, 465, 587, 2525, 5000, 8008, 6379, 443, 80])
        expect(connectionAllowed(policies(), pod(from), outside, port), `${from}->outside:${port}`).toBe(false);
      expect(connectionAllowed(policies(), pod(from), outside, 53, "UDP")).toBe(true);
      expect(connectionAllowed(policies(), pod(from), outside, 53, "TCP")).toBe(true);
    }
    for (const from of ["tsa", "dragonfly", "sink"])
      expect(connectionAllowed(policies(), pod(from), outside, 25), `${from}->outside:25`).toBe(false);
  });
});

describe("the proxy component (k8s/components/proxy)", () => {
  const proxySts = () => find(objects, "StatefulSet", "proxy");
  const kumodEnv = (name: string) => envValue(container(find(objects, "StatefulSet", "kumod"), "kumod"), name);
  const socksPort = () =>
    container(proxySts(), "proxy").ports.find((p: K8sObject) => p.name === "socks").containerPort as number;

  it("gives every proxy source of sources.toml's pool its own Service, on the proxy pod of that ordinal", async () => {
    const sources = parseToml(await readFile(path.join(repoRoot, "policy/sources.toml"), "utf8")) as K8sObject;
    const proxySources = Object.keys(sources.pool.egress).filter((n) => n.startsWith("proxy-"));
    const settings = await readFile(path.join(repoRoot, "policy/tilt_settings.lua"), "utf8");
    const maxProxies = Number(/^mod\.MAX_PROXIES = (\d+)$/m.exec(settings)?.[1]);
    expect(proxySources.sort()).toEqual(Array.from({ length: maxProxies }, (_, i) => `proxy-${i}`));
    for (const name of proxySources) {
      const svc = find(objects, "Service", name);
      expect(svc.spec.selector, name).toEqual({ [POD_NAME]: `${proxySts().metadata.name}-${name.slice(6)}` });
      expect(svc.spec.clusterIP, `${name} needs a stable ClusterIP`).toBeUndefined();
      expect(svc.spec.ports.map((p: K8sObject) => p.port)).toEqual([socksPort()]);
    }
  });

  it("tells kumod the proxy StatefulSet's name, replica count and SOCKS port", () => {
    expect(kumodEnv("PROXY_STS")).toBe(proxySts().metadata.name);
    expect(kumodEnv("PROXY_REPLICAS")).toBe(String(proxySts().spec.replicas));
    expect(kumodEnv("PROXY_PORT")).toBe(String(socksPort()));
    expect(proxySts().spec.replicas).toBe(overlay.replicas.find((r: K8sObject) => r.name === "proxy").count);
  });

  it("listens where the manifest says: proxy_init.lua's ports are the container's", async () => {
    const policy = await readFile(path.join(repoRoot, "policy/proxy_init.lua"), "utf8");
    const listens = [...policy.matchAll(/listen = '0\.0\.0\.0:(\d+)'/g)].map((m) => Number(m[1])).sort();
    const ports = container(proxySts(), "proxy")
      .ports.map((p: K8sObject) => p.containerPort)
      .sort();
    expect(listens).toEqual(ports);
  });
});

describe("the sink-starttls component (k8s/overlays/local-starttls)", () => {
  it("turns on STARTTLS in the sink and TLS in kumod's delivery to it, and changes nothing else", async () => {
    const tls = await render(repoRoot, "k8s/overlays/local-starttls");
    const env = (objs: K8sObject[], kind: string, name: string) => container(find(objs, kind, name), name).env;
    const value = (objs: K8sObject[], kind: string, name: string, variable: string) =>
      envValue(container(find(objs, kind, name), name), variable);
    expect(value(objects, "Deployment", "sink", "SINK_STARTTLS")).toBeUndefined();
    expect(value(objects, "StatefulSet", "kumod", "SINK_TLS")).toBe("Disabled");
    expect(value(tls, "Deployment", "sink", "SINK_STARTTLS")).toBe("true");
    expect(value(tls, "StatefulSet", "kumod", "SINK_TLS")).toBe("OpportunisticInsecure");
    // Apart from those two variables, the objects are the local overlay's.
    const withoutTls = (objs: K8sObject[]) =>
      objs.map((o) => {
        const copy = structuredClone(o);
        for (const [kind, name, variable] of [
          ["Deployment", "sink", "SINK_STARTTLS"],
          ["StatefulSet", "kumod", "SINK_TLS"],
        ] as const) {
          if (copy.kind !== kind || copy.metadata.name !== name) continue;
          const c = container(copy, name);
          c.env = c.env.filter((e: K8sObject) => e.name !== variable);
        }
        return copy;
      });
    expect(withoutTls(tls)).toEqual(withoutTls(objects));
    // Replaced, not added next to the base's value (which kumod would read first).
    expect(env(tls, "StatefulSet", "kumod").filter((e: K8sObject) => e.name === "SINK_TLS")).toHaveLength(1);
  });
});
