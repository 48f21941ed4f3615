import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

/**
 * The workloads a drill hits, in front of test/inject/stand-in-cluster.ts (which runs the injector's Job): real
 * kubectl talks to this server, which answers for the kumod and tsa StatefulSets, the Dragonfly and sink
 * Deployments and their pods, and passes everything else (discovery, the console, Jobs, the Job's pod and log) to
 * the stand-in. Pods come back after a deletion, rollouts progress and scales apply after `settleMs`; every fault
 * kubectl asks for is recorded in `faults`, in order.
 */
// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are read field by field
type Obj = Record<string, any>;

interface FakePod {
  name: string;
  app: string;
  uid: string;
  ready: boolean;
  restarts: number;
}

interface FakeWorkload {
  kind: "statefulset" | "deployment";
  name: string;
  /** Its pods' app.kubernetes.io/name, as in the manifests. */
  app: string;
  replicas: number;
  generation: number;
  updated: number;
  revision: number;
}

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

const plural = { statefulset: "statefulsets", deployment: "deployments" } as const;

export class DrillCluster {
  readonly faults: string[] = [];
  readonly pods = new Map<string, FakePod>();
  readonly workloads = new Map<string, FakeWorkload>();
  kubeconfig = "";
  private server?: http.Server;
  private uids = 0;
  private readonly watchers = new Set<{ kind: string; name: string; res: http.ServerResponse }>();

  constructor(
    private readonly opts: {
      namespace: string;
      /** The stand-in API server that runs the injector's Job. */
      upstream: string;
      secretName: string;
      dir: string;
      settleMs: number;
      /** Workloads to leave out (a component not deployed). */
      without?: string[];
      /** Called when kubectl deletes a pod (the test's kumod stand-in restarts with it). */
      onDelete?: (pod: string) => void;
    },
  ) {
    const add = (kind: FakeWorkload["kind"], name: string, app: string, replicas: number) => {
      if (opts.without?.includes(name)) return;
      this.workloads.set(`${kind}/${name}`, {
        kind,
        name,
        app,
        replicas,
        generation: 1,
        updated: replicas,
        revision: 1,
      });
      for (let i = 0; i < replicas; i++)
        this.addPod(app, kind === "statefulset" ? `${name}-${i}` : `${name}-7d9f-${i}`);
    };
    add("statefulset", "kumod", "kumod", 3);
    add("statefulset", "tsa", "tsa-daemon", 2);
    add("statefulset", "proxy", "kumoproxy", 2);
    add("deployment", "dragonfly", "dragonfly", 1);
    add("deployment", "sink", "sink", 1);
  }

  private addPod(app: string, name: string, ready = true): FakePod {
    const pod = { name, app, uid: `uid-${++this.uids}`, ready, restarts: 0 };
    this.pods.set(name, pod);
    return pod;
  }

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => this.handle(req, res, Buffer.concat(chunks)));
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    const { port } = this.server.address() as AddressInfo;
    this.kubeconfig = path.join(this.opts.dir, "drill-kubeconfig");
    writeFileSync(
      this.kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{name: kind-drill, cluster: {server: "http://127.0.0.1:${port}"}}]`,
        "contexts: [{name: kind-drill, context: {cluster: kind-drill, user: u}}]",
        "current-context: kind-drill",
        "users: [{name: u, user: {}}]",
      ].join("\n"),
    );
    return this;
  }

  async close(): Promise<void> {
    for (const w of this.watchers) w.res.end();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  private later(fn: () => void): void {
    setTimeout(fn, this.opts.settleMs).unref();
  }

  private podJson(p: FakePod): Obj {
    return {
      kind: "Pod",
      apiVersion: "v1",
      metadata: {
        name: p.name,
        namespace: this.opts.namespace,
        uid: p.uid,
        labels: { "app.kubernetes.io/name": p.app },
      },
      status: {
        phase: "Running",
        conditions: [{ type: "Ready", status: p.ready ? "True" : "False" }],
        containerStatuses: [{ name: p.app, restartCount: p.restarts, state: { running: {} } }],
      },
    };
  }

  private workloadJson(w: FakeWorkload): Obj {
    const labels = { "app.kubernetes.io/name": w.app };
    const spec: Obj = { containers: [{ name: w.name, image: w.name }] };
    if (w.name === "kumod") spec.volumes = [{ name: "http-auth", secret: { secretName: this.opts.secretName } }];
    const ready = [...this.pods.values()].filter((p) => p.app === w.app && p.ready).length;
    const revision = (r: number) => `${w.name}-r${r}`;
    return {
      kind: w.kind === "statefulset" ? "StatefulSet" : "Deployment",
      apiVersion: "apps/v1",
      metadata: {
        name: w.name,
        namespace: this.opts.namespace,
        uid: `uid-${w.name}`,
        generation: w.generation,
        resourceVersion: String(w.generation * 1000 + w.updated * 10 + ready),
      },
      spec: {
        replicas: w.replicas,
        selector: { matchLabels: labels },
        ...(w.kind === "statefulset" ? { updateStrategy: { type: "RollingUpdate" } } : {}),
        template: { metadata: { labels }, spec },
      },
      status: {
        observedGeneration: w.generation,
        replicas: w.replicas,
        readyReplicas: ready,
        availableReplicas: ready,
        updatedReplicas: w.updated,
        currentReplicas: w.updated,
        ...(w.kind === "statefulset"
          ? {
              currentRevision: revision(w.updated === w.replicas ? w.revision : w.revision - 1),
              updateRevision: revision(w.revision),
            }
          : { conditions: [{ type: "Progressing", status: "True", reason: "NewReplicaSetAvailable" }] }),
      },
    };
  }

  private changed(w: FakeWorkload): void {
    for (const watch of this.watchers)
      if (watch.kind === w.kind && watch.name === w.name)
        watch.res.write(`${JSON.stringify({ type: "MODIFIED", object: this.workloadJson(w) })}\n`);
  }

  /** One pod of a rollout at a time, as the StatefulSet controller does, each ready after settleMs. */
  private rollNext(w: FakeWorkload): void {
    if (w.updated >= w.replicas) return;
    const name = `${w.name}-${w.replicas - 1 - w.updated}`;
    const pod = this.addPod(w.app, name, false);
    this.changed(w);
    this.later(() => {
      pod.ready = true;
      w.updated++;
      this.changed(w);
      this.rollNext(w);
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) {
    const url = new URL(req.url ?? "/", "http://x");
    const p = url.pathname;
    const ns = `/namespaces/${this.opts.namespace}`;
    if (p === "/apis/apps/v1") {
      const r = (name: string, kind: string, sub?: string) => ({
        name: sub ? `${name}/${sub}` : name,
        singularName: sub ? "" : kind.toLowerCase(),
        namespaced: true,
        kind: sub ? "Scale" : kind,
        ...(sub ? { group: "autoscaling", version: "v1" } : {}),
        verbs: sub ? ["get", "patch", "update"] : ["get", "list", "watch", "patch"],
      });
      return json(res, 200, {
        kind: "APIResourceList",
        apiVersion: "v1",
        groupVersion: "apps/v1",
        resources: [
          r("deployments", "Deployment"),
          r("deployments", "Deployment", "scale"),
          r("statefulsets", "StatefulSet"),
          r("statefulsets", "StatefulSet", "scale"),
        ],
      });
    }
    const wl = new RegExp(`^/apis/apps/v1${ns}/(statefulsets|deployments)(?:/([^/]+))?(?:/(scale))?$`).exec(p);
    if (wl) {
      const kind = wl[1] === "statefulsets" ? "statefulset" : "deployment";
      const name = wl[2] ?? url.searchParams.get("fieldSelector")?.replace("metadata.name=", "");
      const w = name ? this.workloads.get(`${kind}/${name}`) : undefined;
      if (!wl[2]) {
        // list, or watch, by field selector (kubectl rollout status)
        if (url.searchParams.get("watch") === "true") {
          res.writeHead(200, { "content-type": "application/json" });
          res.flushHeaders();
          if (w) {
            const watch = { kind, name: w.name, res };
            this.watchers.add(watch);
            res.on("close", () => this.watchers.delete(watch));
          }
          return;
        }
        return json(res, 200, {
          kind: kind === "statefulset" ? "StatefulSetList" : "DeploymentList",
          apiVersion: "apps/v1",
          metadata: { resourceVersion: "1" },
          items: w ? [this.workloadJson(w)] : [],
        });
      }
      // The console (the injector's image) is the stand-in's.
      if (!w && wl[2] && !this.opts.without?.includes(wl[2])) return this.forward(req, res, body);
      if (!w) return this.notFound(res, `${plural[kind]}.apps "${name}" not found`);
      if (wl[3] === "scale" && req.method === "PATCH") {
        const to = JSON.parse(body.toString()).spec.replicas as number;
        this.faults.push(`scale ${kind}/${w.name} ${to}`);
        const from = w.replicas;
        w.replicas = to;
        w.updated = to;
        w.generation++;
        this.later(() => {
          for (const pod of [...this.pods.values()].filter((x) => x.app === w.app).slice(to))
            this.pods.delete(pod.name);
          for (let i = from; i < to; i++) this.addPod(w.app, `${w.name}-7d9f-${i}`);
          this.changed(w);
        });
        return json(res, 200, {
          kind: "Scale",
          apiVersion: "autoscaling/v1",
          metadata: { name: w.name, namespace: this.opts.namespace },
          spec: { replicas: to },
          status: { replicas: from },
        });
      }
      if (req.method === "PATCH") {
        const patch = JSON.parse(body.toString());
        if (patch.spec?.template?.metadata?.annotations?.["kubectl.kubernetes.io/restartedAt"]) {
          this.faults.push(`rollout restart ${kind}/${w.name}`);
          w.generation++;
          w.revision++;
          w.updated = 0;
          this.rollNext(w);
        }
        return json(res, 200, this.workloadJson(w));
      }
      if (w.name === "kumod" || req.method === "GET") return json(res, 200, this.workloadJson(w));
    }
    const namespace = /^\/api\/v1\/namespaces\/([^/]+)$/.exec(p);
    if (namespace && namespace[1] !== this.opts.namespace)
      return this.notFound(res, `namespaces "${namespace[1]}" not found`);
    if (p === `/api/v1${ns}/pods`) {
      const selector = url.searchParams.get("labelSelector") ?? "";
      const app = /^app\.kubernetes\.io\/name=(.+)$/.exec(selector)?.[1];
      if (app === undefined) return this.forward(req, res, body);
      const items = [...this.pods.values()].filter((x) => x.app === app).map((x) => this.podJson(x));
      return json(res, 200, { kind: "PodList", apiVersion: "v1", metadata: { resourceVersion: "1" }, items });
    }
    const podPath = new RegExp(`^/api/v1${ns}/pods/([^/]+)$`).exec(p);
    const pod = podPath ? this.pods.get(podPath[1] as string) : undefined;
    if (podPath && pod) {
      if (req.method === "DELETE") {
        this.faults.push(`delete pod/${pod.name}`);
        this.opts.onDelete?.(pod.name);
        pod.ready = false;
        // Terminating, then gone, then the controller's new pod under the same name, Ready after settleMs.
        this.later(() => {
          this.pods.delete(pod.name);
          const next = this.addPod(pod.app, pod.name, false);
          this.later(() => {
            next.ready = true;
          });
        });
        return json(res, 200, this.podJson(pod));
      }
      return json(res, 200, this.podJson(pod));
    }
    if (podPath && this.isDrillPodName(podPath[1] as string) && req.method === "GET")
      return this.notFound(res, `pods "${podPath[1]}" not found`);
    return this.forward(req, res, body);
  }

  private isDrillPodName(name: string): boolean {
    return [...this.workloads.values()].some((w) => name.startsWith(`${w.name}-`));
  }

  private notFound(res: http.ServerResponse, message: string): void {
    json(res, 404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404, message });
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer): void {
    const up = new URL(this.opts.upstream);
    const out = http.request(
      { host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      },
    );
    out.on("error", () => res.destroy());
    out.end(body);
  }
}
