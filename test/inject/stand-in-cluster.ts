import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";

/**
 * Just enough of a Kubernetes API server for real kubectl to run `npm run inject -- --in-cluster` against: discovery,
 * the console Deployment and kumod StatefulSet, Jobs (create, get, delete), their pod and its log. A created Job's pod
 * is its container's command run here, with the Secret's values as its environment and `rewrite` applied to its
 * arguments (the cluster's Service names do not resolve here).
 */
// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are read field by field
type Obj = Record<string, any>;

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};
const notFound = (res: http.ServerResponse, what: string) =>
  json(res, 404, { kind: "Status", apiVersion: "v1", status: "Failure", reason: "NotFound", code: 404, message: what });

const resources = (groupVersion: string, list: [string, string, boolean][]) => ({
  kind: "APIResourceList",
  apiVersion: "v1",
  groupVersion,
  resources: list.map(([name, kind, namespaced]) => ({
    name,
    singularName: name.includes("/") ? "" : kind.toLowerCase(),
    namespaced,
    kind,
    verbs: ["create", "delete", "get", "list"],
  })),
});

export class StandInCluster {
  readonly jobs = new Map<string, Obj>();
  readonly deleted: string[] = [];
  /** The Job manifests kubectl sent, as the API server received them. */
  readonly created: Obj[] = [];
  readonly createQueries: string[] = [];
  private pod?: { name: string; child: ChildProcess; log: string; exitCode?: number; followers: http.ServerResponse[] };
  private server?: http.Server;
  kubeconfig = "";

  constructor(
    private readonly opts: {
      namespace: string;
      image: string;
      secret: { name: string; data: Record<string, string> };
      cwd: string;
      rewrite: (arg: string) => string;
      dir: string;
    },
  ) {}

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (c) => {
        body += c;
      });
      req.on("end", () => this.handle(req, res, body));
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    const { port } = this.server.address() as AddressInfo;
    this.kubeconfig = path.join(this.opts.dir, "kubeconfig");
    writeFileSync(
      this.kubeconfig,
      [
        "apiVersion: v1",
        "kind: Config",
        `clusters: [{name: kind-stand-in, cluster: {server: "http://127.0.0.1:${port}"}}]`,
        "contexts: [{name: kind-stand-in, context: {cluster: kind-stand-in, user: u}}]",
        "current-context: kind-stand-in",
        "users: [{name: u, user: {}}]",
      ].join("\n"),
    );
    return this;
  }

  async close(): Promise<void> {
    this.pod?.child.kill();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string) {
    const url = new URL(req.url ?? "/", "http://x");
    const p = url.pathname;
    const ns = `/namespaces/${this.opts.namespace}`;
    if (p === "/api") return json(res, 200, { kind: "APIVersions", versions: ["v1"] });
    // kubectl create validates strictly: the server says (OpenAPI v3) that it checks fields itself.
    if (p === "/openapi/v3")
      return json(res, 200, { paths: { "apis/batch/v1": { serverRelativeURL: "/openapi/v3/apis/batch/v1?hash=1" } } });
    if (p === "/openapi/v3/apis/batch/v1") {
      const op = {
        "x-kubernetes-group-version-kind": { group: "batch", version: "v1", kind: "Job" },
        parameters: [{ name: "fieldValidation", in: "query", schema: { type: "string" } }],
        responses: {},
      };
      return json(res, 200, {
        openapi: "3.0.0",
        info: { title: "Kubernetes", version: "v1.32.0" },
        paths: { "/apis/batch/v1/namespaces/{namespace}/jobs": { post: op, patch: op } },
      });
    }
    if (p === "/apis") {
      const group = (name: string) => ({
        name,
        versions: [{ groupVersion: `${name}/v1`, version: "v1" }],
        preferredVersion: { groupVersion: `${name}/v1`, version: "v1" },
      });
      return json(res, 200, { kind: "APIGroupList", apiVersion: "v1", groups: [group("apps"), group("batch")] });
    }
    if (p === "/api/v1")
      return json(
        res,
        200,
        resources("v1", [
          ["namespaces", "Namespace", false],
          ["pods", "Pod", true],
          ["pods/log", "Pod", true],
          ["pods/exec", "PodExecOptions", true],
        ]),
      );
    if (p === "/apis/apps/v1")
      return json(
        res,
        200,
        resources("apps/v1", [
          ["deployments", "Deployment", true],
          ["statefulsets", "StatefulSet", true],
        ]),
      );
    if (p === "/apis/batch/v1") return json(res, 200, resources("batch/v1", [["jobs", "Job", true]]));
    if (p === `/api/v1${ns}` || p === `/api/v1/namespaces/${this.opts.namespace}`)
      return json(res, 200, { kind: "Namespace", apiVersion: "v1", metadata: { name: this.opts.namespace } });
    if (p === `/apis/apps/v1${ns}/deployments/console`)
      return json(res, 200, {
        kind: "Deployment",
        apiVersion: "apps/v1",
        metadata: { name: "console" },
        spec: {
          template: { spec: { containers: [{ name: "console", image: this.opts.image, imagePullPolicy: "Never" }] } },
        },
      });
    if (p === `/apis/apps/v1${ns}/statefulsets/kumod`)
      return json(res, 200, {
        kind: "StatefulSet",
        apiVersion: "apps/v1",
        metadata: { name: "kumod" },
        spec: {
          template: {
            spec: {
              containers: [{ name: "kumod", image: "kumod" }],
              volumes: [{ name: "http-auth", secret: { secretName: this.opts.secret.name } }],
            },
          },
        },
      });
    if (p === `/apis/batch/v1${ns}/jobs` && req.method === "POST") {
      this.createQueries.push(url.search);
      return this.createJob(res, JSON.parse(body));
    }
    const job = new RegExp(`^/apis/batch/v1${ns}/jobs/([^/]+)$`).exec(p);
    if (job) {
      const found = this.jobs.get(job[1] as string);
      if (!found) return notFound(res, `jobs.batch "${job[1]}" not found`);
      if (req.method === "DELETE") {
        this.jobs.delete(job[1] as string);
        this.deleted.push(job[1] as string);
        this.pod?.child.kill();
        return json(res, 200, { kind: "Status", apiVersion: "v1", status: "Success" });
      }
      return json(res, 200, found);
    }
    if (p === `/api/v1${ns}/pods`) return json(res, 200, { kind: "PodList", apiVersion: "v1", items: this.pods() });
    const log = new RegExp(`^/api/v1${ns}/pods/([^/]+)/log$`).exec(p);
    if (log && this.pod?.name === log[1]) return this.followLog(res);
    const pod = new RegExp(`^/api/v1${ns}/pods/([^/]+)$`).exec(p);
    if (pod && this.pod?.name === pod[1]) return json(res, 200, this.pods()[0]);
    return notFound(res, `${req.method} ${p}`);
  }

  private createJob(res: http.ServerResponse, manifest: Obj): void {
    this.created.push(manifest);
    const name = `${manifest.metadata.generateName}x7k2p`;
    const uid = "0a1b2c3d";
    const job = {
      ...manifest,
      metadata: { ...manifest.metadata, name, uid },
      spec: { ...manifest.spec, selector: { matchLabels: { "batch.kubernetes.io/controller-uid": uid } } },
    };
    this.jobs.set(name, job);
    const c = manifest.spec.template.spec.containers[0];
    const env = Object.fromEntries(
      c.env.map((e: Obj) => {
        const ref = e.valueFrom.secretKeyRef;
        if (ref.name !== this.opts.secret.name) throw new Error(`unknown Secret ${ref.name}`);
        return [e.name, this.opts.secret.data[ref.key]];
      }),
    );
    const [program, ...rest] = c.command as string[];
    const child = spawn(
      program === "node" ? process.execPath : (program as string),
      [...rest, ...(c.args as string[]).map(this.opts.rewrite)],
      { cwd: this.opts.cwd, env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] },
    );
    const pod = { name: `${name}-pod`, child, log: "", followers: [] as http.ServerResponse[], exitCode: undefined };
    this.pod = pod;
    const append = (chunk: Buffer) => {
      pod.log += chunk.toString();
      for (const f of pod.followers) f.write(chunk);
    };
    child.stdout.on("data", append);
    child.stderr.on("data", append);
    child.on("close", (code, signal) => {
      (pod as { exitCode?: number }).exitCode = code ?? (signal ? 137 : 1);
      for (const f of pod.followers) f.end();
    });
    json(res, 201, job);
  }

  private pods(): Obj[] {
    const pod = this.pod;
    if (!pod) return [];
    const state =
      pod.exitCode === undefined
        ? { running: { startedAt: "2026-01-01T00:00:00Z" } }
        : { terminated: { exitCode: pod.exitCode, reason: pod.exitCode === 0 ? "Completed" : "Error" } };
    return [
      {
        kind: "Pod",
        apiVersion: "v1",
        metadata: {
          name: pod.name,
          namespace: this.opts.namespace,
          labels: { "batch.kubernetes.io/controller-uid": "0a1b2c3d" },
        },
        spec: { containers: [{ name: "inject", image: this.opts.image }] },
        status: {
          phase: pod.exitCode === undefined ? "Running" : pod.exitCode === 0 ? "Succeeded" : "Failed",
          containerStatuses: [{ name: "inject", state }],
        },
      },
    ];
  }

  private followLog(res: http.ServerResponse): void {
    const pod = this.pod;
    if (!pod) return;
    res.writeHead(200, { "content-type": "text/plain" });
    res.write(pod.log);
    if (pod.exitCode !== undefined) res.end();
    else pod.followers.push(res);
  }
}
