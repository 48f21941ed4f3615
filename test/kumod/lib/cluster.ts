/**
 * The many-nodes architecture as processes: the local overlay rendered with freshly seeded credentials, each pod of
 * it started from its manifest (see manifests.ts and pod.ts) in its own network namespace on one bridge, a CoreDNS
 * that knows the Services as the cluster DNS, Debian's redis-server in Dragonfly's place and the project's own sink.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { editOverlay, type K8sObject, render, repoRoot, runSeed, scratchRepo } from "../../k8s/render.ts";
import type { Bundle } from "./bundle.ts";
import {
  clusterHosts,
  containerOf,
  POD_NAME_LABEL,
  podLabels,
  podNames,
  resolveEnv,
  resolveMounts,
  workload,
} from "./manifests.ts";
import { type PodHost, PodNetwork, waitFor } from "./network.ts";
import { fileVolume, type Mount, type RunningContainer, startContainer, volumeDir } from "./pod.ts";
import { ServiceProxy } from "./service-proxy.ts";

export interface ClusterOptions {
  bundle: Bundle;
  kumods?: number;
  tsas?: number;
  proxies?: number;
}

interface PodRecord {
  name: string;
  workload: K8sObject;
  host: PodHost;
  labels: Record<string, string>;
  runs: number;
}

const KUMO_IMAGE_DIRS = ["/opt/kumomta/etc", "/var/spool/kumomta", "/var/log/kumomta"];
const POD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export class TestCluster {
  readonly pods = new Map<string, PodRecord>();
  readonly running = new Map<string, RunningContainer | ResultPromise>();
  private redis?: ResultPromise;
  private kubeDns?: PodHost;
  /** Services that select one pod each (the proxies'), with a ClusterIP that outlives the pod. */
  readonly services = new Map<string, { proxy: ServiceProxy; pod: string }>();
  private constructor(
    readonly dir: string,
    readonly objects: K8sObject[],
    readonly namespace: string,
    readonly net: PodNetwork,
    readonly bundle: Bundle,
  ) {}

  static async start(opts: ClusterOptions): Promise<TestCluster> {
    const dir = await mkdtemp(path.join(tmpdir(), "kumomta-tilt-kumod-"));
    const objects = await renderWithCredentials(opts.kumods ?? 3, opts.tsas ?? 2, opts.proxies ?? 2);
    const namespace = objects.find((o) => o.kind === "Namespace")?.metadata.name;
    const net = await PodNetwork.create();
    const cluster = new TestCluster(dir, objects, namespace, net, opts.bundle);
    try {
      await cluster.addPods();
      await cluster.addPodServices();
      await cluster.startClusterDns();
      await cluster.startRedis();
      await cluster.startSink();
      await cluster.startPod("mx-dns-0");
      const startAll = async (prefix: string) => {
        const names = [...cluster.pods.keys()].filter((n) => n.startsWith(prefix));
        await Promise.all(names.map((n) => cluster.startPod(n)));
      };
      await startAll("tsa-");
      await startAll("proxy-");
      await startAll("kumod-");
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  get credentials() {
    const secret = (name: string, key: string) => {
      const s = this.objects.find((o) => o.kind === "Secret" && o.metadata.name.startsWith(`${name}-`));
      return Buffer.from(s?.data[key], "base64").toString("utf8");
    };
    return {
      httpUser: secret("kumo-http-auth", "username"),
      httpPassword: secret("kumo-http-auth", "password"),
      dragonflyPassword: secret("dragonfly-auth", "password"),
    };
  }

  ip(pod: string): string {
    const p = this.pods.get(pod);
    if (!p) throw new Error(`no pod ${pod}`);
    return p.host.ip;
  }

  kumodUrl(ordinal: number): string {
    return `http://${this.ip(`kumod-${ordinal}`)}:8000`;
  }

  tsaUrl(ordinal: number): string {
    return `http://${this.ip(`tsa-${ordinal}`)}:8008`;
  }

  get sinkUrl(): string {
    return `http://${this.ip("sink-0")}:8025`;
  }

  container(pod: string): RunningContainer {
    const c = this.running.get(pod);
    if (!c || !("spec" in c)) throw new Error(`${pod} is not a running KumoMTA pod`);
    return c;
  }

  private async addPods() {
    this.kubeDns = await this.net.addHost("kube-dns");
    const wanted: [string, string][] = [
      ["Deployment", "dragonfly"],
      ["Deployment", "sink"],
      ["Deployment", "mx-dns"],
      ["StatefulSet", "tsa"],
      ["StatefulSet", "proxy"],
      ["StatefulSet", "kumod"],
    ];
    for (const [kind, name] of wanted) {
      const w = workload(this.objects, kind, name);
      for (const pod of podNames(w)) {
        const host = await this.net.addHost(pod);
        this.pods.set(pod, { name: pod, workload: w, host, labels: podLabels(w, pod), runs: 0 });
      }
    }
  }

  /** A ClusterIP (10.96.0.100 onwards) for each Service that selects a single pod by name. */
  private async addPodServices() {
    const perPod = this.objects.filter((o) => o.kind === "Service" && o.spec.selector?.[POD_NAME_LABEL]);
    for (const [index, svc] of perPod.entries()) {
      const pod: string = svc.spec.selector[POD_NAME_LABEL];
      const [port] = svc.spec.ports;
      const record = this.pods.get(pod);
      const target = record ? resolvePort(containerOf(record.workload), port.targetPort) : port.port;
      const proxy = await ServiceProxy.create(`10.96.0.${100 + index}`, port.port, target);
      this.services.set(svc.metadata.name, { proxy, pod });
    }
  }

  /** The Services selecting `pod` follow it: to its current IP once it is ready, to nothing once it stops. */
  private async setEndpoints(pod: string, ip: string | undefined) {
    for (const { proxy, pod: selected } of this.services.values()) if (selected === pod) await proxy.setEndpoint(ip);
  }

  /** What Kubernetes does when a pod is deleted: it stops, and its replacement starts with the same name, a new IP. */
  async replacePod(name: string): Promise<{ before: string; after: string }> {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name}`);
    const before = pod.host.ip;
    await this.stopPod(name);
    pod.host = await this.net.addHost(name);
    await this.startPod(name);
    return { before, after: pod.host.ip };
  }

  /** Stops a pod (SIGTERM, as the kubelet does) and takes it out of its Services. */
  async stopPod(name: string): Promise<void> {
    await this.setEndpoints(name, undefined);
    await this.container(name).stop("SIGTERM", 30_000);
  }

  private get clusterDomain(): string {
    const env = containerOf(workload(this.objects, "StatefulSet", "kumod")).env as K8sObject[];
    return env.find((e) => e.name === "CLUSTER_DOMAIN")?.value ?? "cluster.local";
  }

  /**
   * Cluster DNS as a pod sees it: a resolver (CoreDNS, the same binary as mx-dns) that knows every Service and
   * StatefulSet pod name and nothing else, and a resolv.conf with the namespace's search path.
   */
  private async startClusterDns() {
    const host = this.kubeDns;
    if (!host) throw new Error("no kube-dns host");
    const ips = new Map(
      [...this.pods.values()].map((p) => [
        p.name,
        { ip: p.host.ip, labels: p.labels, workload: p.workload.metadata.name },
      ]),
    );
    const serviceIps = new Map([...this.services.entries()].map(([name, s]) => [name, s.proxy.vip]));
    const dir = path.join(this.dir, "dns");
    await mkdir(dir, { recursive: true });
    await writeFile(
      path.join(dir, "cluster-hosts"),
      clusterHosts(this.objects, this.namespace, this.clusterDomain, ips, serviceIps),
    );
    await writeFile(path.join(dir, "Corefile"), `.:53 {\n    hosts ${path.join(dir, "cluster-hosts")}\n}\n`);
    await writeFile(path.join(dir, "hosts"), "127.0.0.1 localhost\n::1 localhost\n");
    const search = [`${this.namespace}.svc.${this.clusterDomain}`, `svc.${this.clusterDomain}`, this.clusterDomain];
    await writeFile(
      path.join(dir, "resolv.conf"),
      `nameserver ${host.ip}\nsearch ${search.join(" ")}\noptions ndots:5\n`,
    );
    const dns = execa("nsenter", [...host.nsenter, this.bundle.coredns, "-conf", path.join(dir, "Corefile")], {
      reject: false,
      all: true,
    });
    this.running.set("kube-dns", dns);
    await waitFor(
      async () =>
        (await execa("nsenter", [...host.nsenter, "sh", "-c", "ss -lun | grep -q ':53 '"], { reject: false }))
          .exitCode === 0,
      10_000,
      "the cluster DNS to listen",
    );
  }

  /** Debian's redis-server in the Dragonfly pod, with the password of the Secret Dragonfly reads. */
  async startRedis() {
    const pod = this.pods.get("dragonfly-0");
    if (!pod) throw new Error("no dragonfly pod");
    const c = containerOf(pod.workload);
    const env = resolveEnv(this.objects, c, { name: pod.name, namespace: this.namespace });
    const port = String(c.ports.find((p: K8sObject) => p.name === "redis").containerPort);
    const redis = execa(
      "nsenter",
      [
        ...pod.host.nsenter,
        "redis-server",
        "-",
        "--bind",
        "0.0.0.0",
        "--port",
        port,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
      ],
      // Dragonfly reads its password from DFLY_requirepass; redis-server from the same Secret value, not argv.
      { input: `requirepass ${env.DFLY_requirepass}\n`, reject: false, all: true },
    );
    this.running.set(pod.name, redis);
    this.redis = redis;
    await waitFor(
      async () => redisPing(pod.host, port, env.DFLY_requirepass ?? ""),
      10_000,
      "redis-server to answer PING",
    );
  }

  private async startSink() {
    const pod = this.pods.get("sink-0");
    if (!pod) throw new Error("no sink pod");
    const c = containerOf(pod.workload);
    const env = resolveEnv(this.objects, c, { name: pod.name, namespace: this.namespace });
    // Our own process, not KumoMTA's: it runs from the repository in the pod's network namespace, with the rendered
    // rules ConfigMap written where SINK_CONFIG points to.
    const mounts = resolveMounts(this.objects, pod.workload, c);
    const config = mounts.find((m) => env.SINK_CONFIG?.startsWith(`${m.mountPath}/`));
    if (config?.source.kind !== "files") throw new Error("the sink's SINK_CONFIG is not on a ConfigMap mount");
    const configDir = await fileVolume(path.join(this.dir, "sink-config"), config.source.files, 0o644, 0);
    const sinkConfig = path.join(configDir, path.relative(config.mountPath, env.SINK_CONFIG ?? ""));
    const sink = execa("nsenter", [...pod.host.nsenter, process.execPath, "--import", "tsx", "src/main.ts"], {
      cwd: path.join(repoRoot, "sink"),
      env: { ...env, SINK_CONFIG: sinkConfig, SINK_LOG_CONNECTIONS: "false" },
      reject: false,
      all: true,
    });
    this.running.set(pod.name, sink);
    await waitFor(async () => (await tryFetch(`${this.sinkUrl}/readyz`))?.ok === true, 20_000, "the sink to be ready");
  }

  /**
   * Starts (or restarts, keeping its claims) a pod of an image we run for real, waits for its startup probe and
   * then points its Services at it.
   */
  async startPod(name: string): Promise<RunningContainer> {
    const c = await this.launchPod(name);
    const spec = containerOf(this.pods.get(name)?.workload as K8sObject);
    const probe = spec.startupProbe?.httpGet ?? spec.startupProbe?.tcpSocket;
    if (!probe) throw new Error(`${name} has no HTTP or TCP startup probe to wait for`);
    const port = resolvePort(spec, probe.port);
    const passes = spec.startupProbe.httpGet
      ? async () => (await tryFetch(`http://${this.ip(name)}:${port}${probe.path}`))?.ok === true
      : () => tcpConnects(this.ip(name), port);
    let exited: number | null | undefined;
    void c.exited.then((code) => {
      exited = code;
    });
    try {
      await waitFor(
        async () => {
          if (exited !== undefined) throw new Error(`${name} exited (${exited}) before it was ready`);
          return passes();
        },
        120_000,
        `${name} to pass its startup probe (${probe.path ?? `tcp ${port}`})`,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; its output ends:\n${tail(c.output())}`);
    }
    await this.setEndpoints(name, this.ip(name));
    return c;
  }

  /** Starts a pod's container (KumoMTA's or CoreDNS's image) without waiting for it to become ready. */
  async launchPod(
    name: string,
    overrides: { env?: Record<string, string>; args?: string[] } = {},
  ): Promise<RunningContainer> {
    const pod = this.pods.get(name);
    if (!pod) throw new Error(`no pod ${name}`);
    const c = containerOf(pod.workload);
    const security = pod.workload.spec.template.spec.securityContext ?? {};
    const podDir = path.join(this.dir, "pods", name);
    const runDir = path.join(podDir, `run-${++pod.runs}`);
    const mounts: Mount[] = [];
    for (const m of resolveMounts(this.objects, pod.workload, c)) {
      let source: string;
      if (m.source.kind === "emptyDir")
        source = await volumeDir(path.join(runDir, "volumes", m.name), security.fsGroup);
      else if (m.source.kind === "claim")
        source = await volumeDir(path.join(podDir, "claims", m.name), security.fsGroup);
      else
        source = await fileVolume(
          path.join(runDir, "volumes", m.name),
          m.source.files,
          m.source.mode,
          m.source.secret ? security.fsGroup : 0,
        );
      mounts.push({ target: m.mountPath, source, readOnly: m.readOnly });
    }
    mounts.push(
      { target: "/etc/hosts", source: path.join(this.dir, "dns/hosts"), readOnly: true },
      { target: "/etc/resolv.conf", source: path.join(this.dir, "dns/resolv.conf"), readOnly: true },
    );
    for (const sysctl of security.sysctls ?? []) {
      await execa("nsenter", [...pod.host.nsenter, "sysctl", "-qw", `${sysctl.name}=${sysctl.value}`]);
    }
    const container = await startContainer({
      name,
      host: pod.host,
      command: [...(c.command ?? []), ...(c.args ?? []), ...(overrides.args ?? [])],
      env: {
        PATH: POD_PATH,
        HOSTNAME: name,
        ...resolveEnv(this.objects, c, { name, namespace: this.namespace }),
        ...overrides.env,
      },
      mounts,
      ...this.imageOf(c.image),
      user: security.runAsUser,
      group: security.runAsGroup,
      fsGroup: security.fsGroup,
      dir: runDir,
    });
    this.running.set(name, container);
    return container;
  }

  /** The files of a container image, from the binaries under test. */
  private imageOf(image: string): { image: Mount[]; imageDirs: string[] } {
    const ro = (target: string, source: string): Mount => ({ target, source, readOnly: true });
    if (image.startsWith("ghcr.io/kumocorp/kumomta:")) {
      return {
        image: [
          ro("/opt/kumomta/sbin/kumod", this.bundle.kumod),
          ro("/opt/kumomta/sbin/tsa-daemon", this.bundle.tsaDaemon),
          ro("/opt/kumomta/sbin/proxy-server", this.bundle.proxyServer),
          ro("/opt/kumomta/share", this.bundle.share),
        ],
        imageDirs: KUMO_IMAGE_DIRS,
      };
    }
    if (image.startsWith("coredns/coredns:")) return { image: [ro("/coredns", this.bundle.coredns)], imageDirs: [] };
    throw new Error(`no local stand-in for image ${image}`);
  }

  async stopRedis(): Promise<void> {
    this.redis?.kill("SIGTERM");
    await this.redis;
  }

  async stop(): Promise<void> {
    const kumo = [...this.running.entries()].filter(([, c]) => "spec" in c) as [string, RunningContainer][];
    await Promise.all(kumo.map(([, c]) => c.stop("SIGTERM", 20_000)));
    for (const [, c] of this.running) {
      if (!("spec" in c)) {
        c.kill("SIGTERM");
        await c;
      }
    }
    for (const { proxy } of this.services.values()) await proxy.close();
    await this.net.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

async function renderWithCredentials(kumods: number, tsas: number, proxies: number): Promise<K8sObject[]> {
  const scratch = await scratchRepo();
  try {
    const seeded = await runSeed(scratch);
    if (seeded.exitCode !== 0) throw new Error(`npm run seed failed in a scratch copy:\n${seeded.stderr}`);
    await editOverlay(scratch, (k) => {
      k.replicas = [
        { name: "kumod", count: kumods },
        { name: "tsa", count: tsas },
        { name: "proxy", count: proxies },
      ];
    });
    return await render(scratch);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

function resolvePort(c: K8sObject, port: string | number): number {
  if (typeof port === "number") return port;
  const p = (c.ports ?? []).find((x: K8sObject) => x.name === port);
  if (!p) throw new Error(`named port ${port} not in container ${c.name}`);
  return p.containerPort;
}

async function redisPing(host: PodHost, port: string, password: string): Promise<boolean> {
  const r = await execa("nsenter", [...host.nsenter, "redis-cli", "-p", port, "ping"], {
    reject: false,
    env: { REDISCLI_AUTH: password },
  });
  return r.stdout.trim() === "PONG";
}

function tcpConnects(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 2000 });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function tryFetch(url: string): Promise<Response | undefined> {
  try {
    return await fetch(url, { signal: AbortSignal.timeout(5000) });
  } catch {
    return undefined;
  }
}

/** The last lines a process printed, without the frames of a Rust backtrace. */
export const tail = (text: string, lines = 30) =>
  text
    .split("\n")
    .filter((l) => !/^\s+(\d+: |at )/.test(l))
    .slice(-lines)
    .join("\n");
