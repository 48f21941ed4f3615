import { generateKeyPairSync, randomBytes } from "node:crypto";
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa, type ResultPromise } from "execa";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";

const repoRoot = path.resolve(import.meta.dirname, "../..");
const toolsDir = path.join(repoRoot, ".tools");
const INSTALL = "run .ci/install-tools.sh (it builds the pinned control plane from .ci/tools/kube)";

// Named like `kind create cluster --name kumomta-tilt-test` names its context and cluster: the tools and Tilt accept
// local products only, and they recognise them by these names.
const CONTEXT = "kind-kumomta-tilt-test";

/** The kwok nodes of a cluster with controllers: two, so the scheduler has a choice. */
const NODES = ["kwok-node-0", "kwok-node-1"];

export interface ControlPlane {
  /** Environment for a child that should talk to this cluster (KUBECONFIG and kubectl's cache; HOME stays). */
  env: Record<string, string>;
  kubectl(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<KubectlResult>;
  /** kubectl that must exit 0; its stdout. */
  kubectlOk(args: string[], opts?: { input?: string; timeoutMs?: number }): Promise<string>;
  stop(): Promise<void>;
}

export interface KubectlResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

interface Proc {
  name: string;
  child: ResultPromise;
  log: string;
}

const bin = (name: string): string => {
  const file = path.join(toolsDir, "bin", name);
  requireTool(file, INSTALL);
  return file;
};

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.listen(0, "127.0.0.1", resolve).on("error", reject));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** GET over TLS without verifying the self-signed serving certificate (loopback only); true on HTTP 200. */
function httpsOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = https.get(url, { rejectUnauthorized: false, timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.on("timeout", () => req.destroy());
  });
}

async function tail(file: string, lines = 25): Promise<string> {
  const text = await readFile(file, "utf8").catch(() => "");
  return text.trim().split("\n").slice(-lines).join("\n");
}

export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, logs: Proc[] = []) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    const dead = logs.find((p) => p.child.exitCode !== null);
    if (dead) throw new Error(`${dead.name} exited while waiting for ${what}:\n${await tail(dead.log)}`);
    await sleep(250);
  }
  const detail = await Promise.all(logs.map(async (p) => `--- ${p.name}\n${await tail(p.log, 8)}`));
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${detail.join("\n")}`);
}

/** kwok's own stage files for nodes, pods and volumes, copied next to its binary by .ci/install-tools.sh. */
async function kwokStages(): Promise<string[]> {
  const dir = path.join(toolsDir, "share/kwok-stages");
  if (!existsSync(dir)) throw new Error(`${dir} is missing: ${INSTALL}`);
  const files = (await readdir(dir)).filter((f) => f.endsWith(".yaml") && f !== "storage-class.yaml").sort();
  return Promise.all(files.map((f) => readFile(path.join(dir, f), "utf8")));
}

/** The default StorageClass kwok's volume stages provision for (Immediate binding, Delete reclaim). */
const kwokStorageClass = (): Promise<string> =>
  readFile(path.join(toolsDir, "share/kwok-stages/storage-class.yaml"), "utf8");

/** A pod port (any pod) that kwok's port-forward connects to a local stand-in listening on `to`. */
export interface Forward {
  port: number;
  to: number;
}

/**
 * A real Kubernetes control plane on loopback: etcd and kube-apiserver and, with `controllers`, kube-controller-manager,
 * kube-scheduler and kwok (it plays the nodes' kubelets: pods become Ready without running). Every binary is the pinned
 * build from .ci/install-tools.sh (.ci/tools/kube). One throw-away directory holds data, keys, logs, kubectl's cache
 * and the kubeconfig; `stop()` ends every process and removes it, and a failed start stops what it started.
 */
export async function startControlPlane(
  opts: { controllers?: boolean; forwards?: Forward[] } = {},
): Promise<ControlPlane> {
  requireTool("kubectl", HOW_TO_GET.kubectl);
  const binaries = [
    "etcd",
    "kube-apiserver",
    ...(opts.controllers ? ["kube-controller-manager", "kube-scheduler", "kwok"] : []),
  ];
  const paths = Object.fromEntries(binaries.map((b) => [b, bin(b)]));
  const dir = await mkdtemp(path.join(tmpdir(), "kumomta-tilt-control-plane-"));
  const procs: Proc[] = [];
  const kubeconfig = path.join(dir, "kubeconfig");
  // kubectl caches discovery per server address under ~/.kube/cache; this cluster's stays in its own directory.
  const env = { KUBECONFIG: kubeconfig, KUBECACHEDIR: path.join(dir, "kube-cache") };

  const start = (name: string, args: string[]) => {
    const log = path.join(dir, `${name}.log`);
    const out = createWriteStream(log);
    const child = execa(paths[name] as string, args, { reject: false, stdin: "ignore", all: true, cleanup: true });
    child.all?.pipe(out);
    procs.push({ name, child, log });
  };

  const kubectl = async (args: string[], o: { input?: string; timeoutMs?: number } = {}): Promise<KubectlResult> => {
    const r = await execa("kubectl", args, {
      reject: false,
      env,
      input: o.input,
      stdin: o.input === undefined ? "ignore" : undefined,
      timeout: o.timeoutMs ?? 60_000,
    });
    return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr) };
  };
  const kubectlOk = async (args: string[], o: { input?: string; timeoutMs?: number } = {}) => {
    const r = await kubectl(args, o);
    if (r.exitCode !== 0) throw new Error(`kubectl ${args.join(" ")} exited ${r.exitCode}:\n${r.stderr}`);
    return r.stdout;
  };

  const stop = async () => {
    for (const p of [...procs].reverse()) {
      if (p.child.exitCode === null) p.child.kill("SIGTERM");
      const ended = await Promise.race([p.child.then(() => true), sleep(10_000).then(() => false)]);
      if (!ended) {
        p.child.kill("SIGKILL");
        await p.child;
      }
    }
    await rm(dir, { recursive: true, force: true });
  };

  try {
    const [etcdPort, peerPort, apiPort] = [await freePort(), await freePort(), await freePort()];
    const etcdUrl = `http://127.0.0.1:${etcdPort}`;
    const peerUrl = `http://127.0.0.1:${peerPort}`;
    start("etcd", [
      `--data-dir=${path.join(dir, "etcd")}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=default=${peerUrl}`,
      // A throw-away store: durability buys nothing and fsync is the slowest part of etcd on a shared disk.
      "--unsafe-no-fsync",
      "--log-level=warn",
    ]);

    const pki = path.join(dir, "pki");
    await mkdir(pki);
    const sa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    await writeFile(path.join(pki, "sa.key"), sa.privateKey.export({ type: "pkcs8", format: "pem" }));
    await writeFile(path.join(pki, "sa.pub"), sa.publicKey.export({ type: "spki", format: "pem" }));
    const token = randomBytes(24).toString("hex");
    await writeFile(path.join(pki, "tokens.csv"), `${token},admin,admin,system:masters\n`);

    start("kube-apiserver", [
      `--etcd-servers=${etcdUrl}`,
      "--bind-address=127.0.0.1",
      "--advertise-address=127.0.0.1",
      `--secure-port=${apiPort}`,
      `--cert-dir=${pki}`,
      `--token-auth-file=${path.join(pki, "tokens.csv")}`,
      "--authorization-mode=Node,RBAC",
      "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
      `--service-account-key-file=${path.join(pki, "sa.pub")}`,
      `--service-account-signing-key-file=${path.join(pki, "sa.key")}`,
      "--service-cluster-ip-range=10.96.0.0/16",
      // A node's kubelet API is kwok at the node's InternalIP. Without --kubelet-certificate-authority the API server
      // does not verify it, so kwok serves with the API server's own self-signed pair.
      "--kubelet-preferred-address-types=InternalIP",
    ]);
    await writeFile(
      kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{name: ${CONTEXT}, cluster: {server: "https://127.0.0.1:${apiPort}", insecure-skip-tls-verify: true}}]`,
        `contexts: [{name: ${CONTEXT}, context: {cluster: ${CONTEXT}, user: ${CONTEXT}}}]`,
        `current-context: ${CONTEXT}`,
        `users: [{name: ${CONTEXT}, user: {token: "${token}"}}]`,
        "",
      ].join("\n"),
      { mode: 0o600 },
    );
    await waitFor(
      "kube-apiserver /readyz",
      async () => (await kubectl(["get", "--raw=/readyz", "--request-timeout=2s"], { timeoutMs: 5000 })).exitCode === 0,
      90_000,
      procs,
    );

    if (opts.controllers) {
      const [kcmPort, schedPort, kwokPort] = [await freePort(), await freePort(), await freePort()];
      start("kube-controller-manager", [
        `--kubeconfig=${kubeconfig}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${kcmPort}`,
        `--cert-dir=${path.join(dir, "kcm")}`,
        "--leader-elect=false",
        `--service-account-private-key-file=${path.join(pki, "sa.key")}`,
        `--root-ca-file=${path.join(pki, "apiserver.crt")}`,
        "--controllers=*",
      ]);
      start("kube-scheduler", [
        `--kubeconfig=${kubeconfig}`,
        "--bind-address=127.0.0.1",
        `--secure-port=${schedPort}`,
        `--cert-dir=${path.join(dir, "scheduler")}`,
        "--leader-elect=false",
      ]);
      const kwokConfig = [
        [
          "apiVersion: config.kwok.x-k8s.io/v1alpha1",
          "kind: KwokConfiguration",
          "options:",
          "  manageAllNodes: true",
          "  nodeIP: 127.0.0.1",
          `  nodePort: ${kwokPort}`,
          `  serverAddress: 127.0.0.1:${kwokPort}`,
          `  tlsCertFile: ${path.join(pki, "apiserver.crt")}`,
          `  tlsPrivateKeyFile: ${path.join(pki, "apiserver.key")}`,
          "  nodeLeaseDurationSeconds: 40",
          // Serves the kubelet API's port-forward (the ClusterPortForward below says where each pod port goes).
          "  enableDebuggingHandlers: true",
          // The defaults kwok's own deployment (kustomize/kwok/kwok.yaml) sets; a bare configuration has zeros.
          "  nodeLeaseParallelism: 2",
          "  podPlayStageParallelism: 2",
          "  nodePlayStageParallelism: 2",
          "  enablePodsOnNodeSyncStreamWatch: true",
          "  cidr: 10.0.0.0/24",
        ].join("\n"),
        ...(await kwokStages()),
        ...(opts.forwards?.length
          ? [
              [
                "apiVersion: kwok.x-k8s.io/v1alpha1",
                "kind: ClusterPortForward",
                "metadata: {name: stand-ins}",
                "spec:",
                "  forwards:",
                ...opts.forwards.map((f) => `    - {ports: [${f.port}], target: {port: ${f.to}, address: 127.0.0.1}}`),
              ].join("\n"),
            ]
          : []),
      ].join("\n---\n");
      await writeFile(path.join(dir, "kwok.yaml"), kwokConfig);
      start("kwok", [`--config=${path.join(dir, "kwok.yaml")}`, `--kubeconfig=${kubeconfig}`]);
      await waitFor(
        "kube-controller-manager /healthz",
        () => httpsOk(`https://127.0.0.1:${kcmPort}/healthz`),
        60_000,
        procs,
      );
      await waitFor("kube-scheduler /healthz", () => httpsOk(`https://127.0.0.1:${schedPort}/healthz`), 60_000, procs);
      await kubectlOk(["apply", "-f", "-"], { input: await kwokStorageClass() });
      await kubectlOk(["apply", "-f", "-"], { input: NODES.map(nodeManifest).join("\n---\n") });
      await waitFor(
        "kwok nodes Ready",
        async () => (await kubectl(["wait", "--for=condition=Ready", "node", "--all", "--timeout=2s"])).exitCode === 0,
        60_000,
        procs,
      );
      await waitFor(
        "the default ServiceAccount",
        async () => (await kubectl(["get", "serviceaccount", "default", "-n", "default"])).exitCode === 0,
        60_000,
        procs,
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { env, kubectl, kubectlOk, stop };
}

/** A node kwok plays (kwok's documented node shape); it reports itself Ready once kwok's node stage runs. */
const nodeManifest = (name: string) =>
  [
    "apiVersion: v1",
    "kind: Node",
    "metadata:",
    `  name: ${name}`,
    "  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: '0'}",
    `  labels: {kubernetes.io/hostname: ${name}, kubernetes.io/os: linux, kubernetes.io/arch: amd64, type: kwok}`,
    "spec: {}",
    "status:",
    "  allocatable: {cpu: '16', memory: 64Gi, ephemeral-storage: 100Gi, pods: '110'}",
    "  capacity: {cpu: '16', memory: 64Gi, ephemeral-storage: 100Gi, pods: '110'}",
  ].join("\n");
