/**
 * `npm run inject -- --in-cluster`: the Job manifest through the same offline checks as the overlay's objects, the
 * NetworkPolicies around its pods, the pod's command run here from exactly the files the image holds, and the CLI's
 * failures without a cluster.
 */
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { Job } from "kubernetes-models/batch/v1";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseInjectArgs } from "../../scripts/lib/inject-args.ts";
import {
  IN_CLUSTER_KUMOD_URL,
  IN_CLUSTER_SINK_URL,
  INJECT_COMMAND,
  inClusterConflict,
  injectJob,
  logLineStream,
  podArgs,
  podState,
  splitInCluster,
} from "../../scripts/lib/inject-job.ts";
import { connectionAllowed, covered, type Peer } from "../k8s/network-policy.ts";
import { container, find, findGenerated, type K8sObject, render, repoRoot, runSeed } from "../k8s/render.ts";
import { FakeKumod } from "./fake-kumod.ts";
import { closedUrl, inject } from "./run-inject.ts";
import { StandInCluster } from "./stand-in-cluster.ts";

const spec = (args: string[] = ["--count", "10"]) => ({
  namespace: "kumomta",
  image: "kumomta-tilt-console:tilt-0123456789abcdef",
  imagePullPolicy: "IfNotPresent",
  secretName: "kumo-http-auth-abcde12345",
  args,
});

describe("the command line handed to the Job", () => {
  it("drops --in-cluster and adds the kumod Service, the sink Service with --verify, and no progress bar", () => {
    const { inCluster, argv } = splitInCluster(["--count", "5", "--in-cluster", "--verify"]);
    expect(inCluster).toBe(true);
    expect(argv).toEqual(["--count", "5", "--verify"]);
    expect(podArgs(argv, true)).toEqual([
      "--count",
      "5",
      "--verify",
      "--url",
      IN_CLUSTER_KUMOD_URL,
      "--sink-url",
      IN_CLUSTER_SINK_URL,
      "--no-progress",
    ]);
    expect(podArgs(["--count", "5"], false)).toEqual(["--count", "5", "--url", IN_CLUSTER_KUMOD_URL, "--no-progress"]);
    // The pod's command line parses as the injector's own.
    expect(parseInjectArgs(podArgs(argv, true))).toMatchObject({ count: 5, verify: true, progress: false });
    expect(splitInCluster(["--count", "5"]).inCluster).toBe(false);
    expect(splitInCluster(["--", "--in-cluster"]).inCluster).toBe(false);
  });

  it.each([
    [["--url", "http://localhost:8000"], "--url cannot be used with --in-cluster"],
    [["--sink-url", "http://localhost:8025"], "--sink-url cannot be used with --in-cluster"],
    [["--user", "alice"], "--user/--password cannot be used with --in-cluster"],
    [["--payload", "my.json"], "--payload cannot be used with --in-cluster"],
  ])("refuses %j, which the Job decides or cannot see", (args, message) => {
    expect(inClusterConflict(parseInjectArgs(args))).toContain(message);
  });

  it("accepts every load, output and verify option", () => {
    const args = ["--count", "1000", "--rate", "100", "--domains", "gmail.com,yahoo.com", "--json", "--verify"];
    expect(inClusterConflict(parseInjectArgs(args))).toBeUndefined();
  });
});

describe("the Job manifest", () => {
  let objects: K8sObject[];
  beforeAll(async () => {
    const seeded = await runSeed(repoRoot, ["--quiet"]);
    expect(seeded.exitCode, seeded.stderr).toBe(0);
    objects = await render(repoRoot);
  });

  it("passes kubernetes-models' API schema validation", () => {
    expect(() => new Job(injectJob(spec()) as K8sObject).validate()).not.toThrow();
  });

  it("runs once, never restarted (a rerun would inject twice), and cleans itself up", () => {
    const job = injectJob(spec()) as K8sObject;
    expect(job.spec.backoffLimit).toBe(0);
    expect(job.spec.template.spec.restartPolicy).toBe("Never");
    expect(job.spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
    expect(job.metadata.generateName).toBe("inject-");
  });

  it("has the console's hardening: non-root, read-only root filesystem, no capabilities, no token", () => {
    const job = injectJob(spec()) as K8sObject;
    const console = find(objects, "Deployment", "console");
    const pod = job.spec.template.spec;
    expect(pod.securityContext).toEqual(console.spec.template.spec.securityContext);
    expect(pod.automountServiceAccountToken).toBe(false);
    const c = container(job, "inject");
    expect(c.securityContext).toEqual(container(console, "console").securityContext);
    expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
    expect(c.volumeMounts).toEqual([{ name: "tmp", mountPath: "/tmp" }]);
    expect(pod.volumes.find((v: K8sObject) => v.name === "tmp").emptyDir).toBeDefined();
    expect(c.resources.limits.memory).toBeDefined();
    expect(c.image).toBe(spec().image);
    expect(c.command).toEqual(INJECT_COMMAND);
  });

  it("takes its credentials from the generated kumo-http-auth Secret's keys", () => {
    const secret = findGenerated(objects, "Secret", "kumo-http-auth");
    const job = injectJob({ ...spec(), secretName: secret.metadata.name }) as K8sObject;
    const env = Object.fromEntries(container(job, "inject").env.map((e: K8sObject) => [e.name, e.valueFrom]));
    expect(Object.keys(env).sort()).toEqual(["KUMO_HTTP_PASSWORD", "KUMO_HTTP_USER"]);
    for (const ref of Object.values(env)) {
      expect(ref.secretKeyRef.name).toBe(secret.metadata.name);
      expect(Object.keys(secret.data)).toContain(ref.secretKeyRef.key);
    }
    // The same Secret kumod checks the credentials against.
    const kumod = find(objects, "StatefulSet", "kumod");
    const volume = kumod.spec.template.spec.volumes.find((v: K8sObject) => v.name === "http-auth");
    expect(volume.secret.secretName).toBe(secret.metadata.name);
  });

  it("names the kumod and sink Services on the ports they serve", () => {
    for (const [url, workload] of [
      [IN_CLUSTER_KUMOD_URL, "kumod"],
      [IN_CLUSTER_SINK_URL, "sink"],
    ] as const) {
      const u = new URL(url);
      const svc = find(objects, "Service", u.hostname);
      expect(svc.spec.clusterIP, "a Service address, not headless").toBeUndefined();
      expect(svc.spec.selector["app.kubernetes.io/name"]).toBe(workload);
      expect(svc.spec.ports.map((p: K8sObject) => p.port)).toContain(Number(u.port));
    }
  });

  it("may reach only kumod's HTTP port, the sink's HTTP port and DNS; nothing reaches it", () => {
    const policies = objects.filter((o) => o.kind === "NetworkPolicy");
    const me: Peer = { labels: (injectJob(spec()) as K8sObject).spec.template.metadata.labels };
    expect(covered(policies, "Ingress", me.labels as Record<string, string>)).toBe(true);
    expect(covered(policies, "Egress", me.labels as Record<string, string>)).toBe(true);
    const labels = (kind: string, name: string): Peer => ({
      labels: find(objects, kind, name).spec.template.metadata.labels,
    });
    const others: Record<string, [Peer, number[]]> = {
      kumod: [labels("StatefulSet", "kumod"), [8000]],
      tsa: [labels("StatefulSet", "tsa"), [8008]],
      sink: [labels("Deployment", "sink"), [2525, 2526, 2527, 2528, 8025]],
      dragonfly: [labels("Deployment", "dragonfly"), [6379]],
      console: [labels("Deployment", "console"), [8090]],
      "mx-dns": [labels("Deployment", "mx-dns"), [53]],
    };
    const allowed = new Set(["kumod:8000", "sink:8025"]);
    for (const [name, [peer, ports]] of Object.entries(others))
      for (const port of ports) {
        expect(connectionAllowed(policies, me, peer, port), `inject-job->${name}:${port}`).toBe(
          allowed.has(`${name}:${port}`),
        );
        expect(connectionAllowed(policies, peer, me, 8000), `${name}->inject-job`).toBe(false);
      }
    for (const port of [25, 80, 443, 8000])
      expect(connectionAllowed(policies, me, {}, port), `inject-job->outside:${port}`).toBe(false);
    expect(connectionAllowed(policies, me, {}, 53, "UDP")).toBe(true);
    // Opening kumod to the Job opened it to nobody else.
    expect(connectionAllowed(policies, others.sink?.[0] as Peer, others.kumod?.[0] as Peer, 8000)).toBe(false);
    expect(connectionAllowed(policies, {}, others.kumod?.[0] as Peer, 8000)).toBe(false);
  });
});

describe("the Job's pod", () => {
  it("reads the container's state: waiting, stuck on its image, running, and the injector's exit code", () => {
    const pods = (state?: object, phase = "Pending") =>
      JSON.stringify({ items: [{ status: { phase, containerStatuses: state ? [{ state }] : undefined } }] });
    expect(podState(JSON.stringify({ items: [] }))).toEqual({ state: "pending", reason: undefined });
    expect(podState(pods())).toEqual({ state: "pending", reason: "Pending" });
    expect(podState(pods({ waiting: { reason: "ContainerCreating" } }))).toEqual({
      state: "pending",
      reason: "ContainerCreating",
    });
    expect(podState(pods({ waiting: { reason: "ErrImagePull", message: "not found" } }))).toEqual({
      state: "stuck",
      reason: "ErrImagePull",
      message: "not found",
    });
    expect(podState(pods({ running: {} }, "Running"))).toEqual({ state: "running" });
    expect(podState(pods({ terminated: { exitCode: 12, reason: "Error" } }, "Failed"))).toEqual({
      state: "terminated",
      exitCode: 12,
      reason: "Error",
    });
  });

  it("with --json, only the summary line of its log goes to stdout; without, error and hint lines go to stderr", () => {
    expect(logLineStream('{"exit_code":0}', true)).toBe("stdout");
    expect(logLineStream("waiting for kumod http://kumod:8000: 503 (restarting?)", true)).toBe("stderr");
    expect(logLineStream("{not json", true)).toBe("stderr");
    expect(logLineStream("requests: 10 ok", false)).toBe("stdout");
    expect(logLineStream("error: kumod rejected 20 of 20 recipients", false)).toBe("stderr");
    expect(logLineStream("hint: The recipients or the envelope_sender did not pass", false)).toBe("stderr");
  });
});

/** WORKDIR /app of the console image's final stage: every COPY from the build context, node_modules linked. */
async function consoleImageFiles(): Promise<string> {
  const dockerfile = await readFile(path.join(repoRoot, "scripts/console/Dockerfile"), "utf8");
  const final = dockerfile.split(/^(?=FROM\s)/m).at(-1) ?? "";
  const image = await mkdtemp(path.join(tmpdir(), "console-image-"));
  for (const m of final.matchAll(/^COPY[ \t]+(?!--)(\S+(?:[ \t]+\S+)*)[ \t]+(\S+)[ \t]*$/gm)) {
    const dest = path.resolve(image, m[2] as string);
    for (const src of (m[1] as string).split(/[ \t]+/)) {
      const target = (m[2] as string).endsWith("/") ? path.join(dest, path.basename(src)) : dest;
      await mkdir(path.dirname(target), { recursive: true });
      await cp(path.join(repoRoot, src), target, { recursive: true });
    }
  }
  await symlink(path.join(repoRoot, "node_modules"), path.join(image, "node_modules"));
  return image;
}

describe("the Job's command, run from exactly the files the console image holds", () => {
  let image: string;
  let kumod: FakeKumod;
  beforeAll(async () => {
    image = await consoleImageFiles();
    kumod = await new FakeKumod({ user: "inject", password: "from-the-secret" }).start();
  });
  afterAll(async () => {
    await kumod?.close();
    await rm(image, { recursive: true, force: true });
  });

  it("injects with the Secret's credentials and prints the JSON summary", async () => {
    const job = injectJob(spec(podArgs(["--count", "250", "--batch", "50", "--json"], false))) as K8sObject;
    const c = container(job, "inject");
    const [program, ...rest] = c.command as string[];
    // The kumod Service's name resolves only in the cluster: here it is the stand-in's address.
    const args = (c.args as string[]).map((a) => (a === IN_CLUSTER_KUMOD_URL ? kumod.url : a));
    const secret: Record<string, string> = { username: "inject", password: "from-the-secret" };
    const env = Object.fromEntries(
      c.env.map((e: K8sObject) => [e.name, secret[e.valueFrom.secretKeyRef.key] as string]),
    );
    const r = await execa(program === "node" ? process.execPath : (program as string), [...rest, ...args], {
      cwd: image,
      reject: false,
      extendEnv: false,
      env: { PATH: process.env.PATH ?? "", ...env },
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ exit_code: 0, recipients: { sent: 250, accepted: 250 } });
    expect(kumod.recipientsAccepted).toBe(250);
  });
});

describe("npm run inject -- --in-cluster with real kubectl and a stand-in API server", () => {
  let image: string;
  let dir: string;
  let kumod: FakeKumod;
  let cluster: StandInCluster;
  const secret = { name: "kumo-http-auth-5f7m2k9h4c", data: { username: "inject", password: "from-the-secret" } };
  beforeAll(async () => {
    image = await consoleImageFiles();
    dir = await mkdtemp(path.join(tmpdir(), "stand-in-cluster-"));
    kumod = await new FakeKumod({
      user: secret.data.username,
      password: secret.data.password,
      rejectMarker: "reject-me",
    }).start();
  });
  afterEach(async () => cluster?.close());
  afterAll(async () => {
    await kumod?.close();
    await rm(image, { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  });

  async function standIn(): Promise<StandInCluster> {
    cluster = await new StandInCluster({
      namespace: "kumomta",
      image: "kumomta-tilt-console:tilt-4f1e2d3c4b5a6978",
      secret,
      cwd: image,
      dir,
      rewrite: (a) => (a === IN_CLUSTER_KUMOD_URL ? kumod.url : a),
    }).start();
    return cluster;
  }

  it("creates the Job from the console's image and kumod's Secret, streams its output, and deletes it", async () => {
    const c = await standIn();
    const before = kumod.recipientsAccepted;
    const r = await inject(["--in-cluster", "--count", "300", "--batch", "60"], { KUBECONFIG: c.kubeconfig });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(kumod.recipientsAccepted - before).toBe(300);
    // The injector's summary, printed in the pod, arrives here.
    expect(r.stdout).toMatch(/300/);
    expect(r.stderr).toContain("job/inject-x7k2p in namespace kumomta (image kumomta-tilt-console:tilt-");
    const [job] = c.created;
    const container = job?.spec.template.spec.containers[0];
    expect(container.image).toBe("kumomta-tilt-console:tilt-4f1e2d3c4b5a6978");
    expect(container.imagePullPolicy).toBe("Never");
    expect(container.args).toEqual(["--count", "300", "--batch", "60", "--url", IN_CLUSTER_KUMOD_URL, "--no-progress"]);
    expect(c.deleted).toEqual(["inject-x7k2p"]);
    // The API server checks the Job's fields itself (kubectl's strict validation).
    expect(c.createQueries[0]).toContain("fieldValidation=Strict");
  });

  it("deletes the Job on Ctrl-C when the injector cannot be reached to stop it, and exits 130", async () => {
    const c = await standIn();
    const run = inject(["--in-cluster", "--count", "100000", "--batch", "10", "--rate", "100"], {
      KUBECONFIG: c.kubeconfig,
    });
    let err = "";
    run.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString();
    });
    // Once the pod runs and its output streams here.
    while (!/injecting from the cluster/.test(err) || c.created.length === 0) await sleep(100);
    await sleep(1500);
    run.kill("SIGINT");
    const r = await run;
    expect(r.exitCode).toBe(130);
    expect(r.stderr).toContain("stopping the injector in the cluster");
    expect(r.stderr).toContain("stopping: deleting job/inject-x7k2p");
    expect(c.deleted).toContain("inject-x7k2p");
  });

  it("ends with the injector's exit code, and with --json prints only its summary on stdout", async () => {
    const c = await standIn();
    // An envelope the stand-in kumod rejects recipients of: exit 9 in the pod, exit 9 here.
    const r = await inject(["--in-cluster", "--count", "20", "--local-part", "reject-me", "--json"], {
      KUBECONFIG: c.kubeconfig,
    });
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const summary = JSON.parse(r.stdout);
    expect(summary).toMatchObject({ exit_code: 9, recipients: { sent: 20, failed: 20 } });
    expect(r.exitCode).toBe(9);
    // The injector's error lines come through stderr.
    expect(r.stderr).toContain("error: kumod rejected 20 of 20 recipients");
    expect(c.deleted).toEqual(["inject-x7k2p"]);
  });
});

describe("npm run inject -- --in-cluster without a cluster", () => {
  const tmp = mkdtemp(path.join(tmpdir(), "in-cluster-"));
  afterAll(async () => rm(await tmp, { recursive: true, force: true }));

  it("says the cluster is unreachable (exit 14), with --json too", async () => {
    const dir = await tmp;
    const kubeconfig = path.join(dir, "kubeconfig");
    await writeFile(
      kubeconfig,
      `apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:9"}
  name: kind-closed
contexts:
- context: {cluster: kind-closed, user: nobody}
  name: kind-closed
current-context: kind-closed
users:
- name: nobody
  user: {token: not-a-secret}
`,
    );
    const r = await inject(["--in-cluster", "--count", "10", "--json"], { KUBECONFIG: kubeconfig });
    expect(r.exitCode).toBe(14);
    expect(r.stderr).toContain("127.0.0.1:9 was refused");
    expect(r.stderr).toContain("hint: Start your local cluster");
    expect(JSON.parse(r.stdout)).toMatchObject({ exit_code: 14 });
  });

  it("says kubectl is missing (exit 13)", async () => {
    const bin = path.join(await tmp, "bin");
    await mkdir(bin);
    await symlink(process.execPath, path.join(bin, "node"));
    const r = await inject(["--in-cluster"], { PATH: bin });
    expect(r.exitCode).toBe(13);
    expect(r.stderr).toContain("kubectl not found");
  });

  it("refuses --url with a usage error (exit 2) before touching the cluster", async () => {
    // A kubeconfig that does not exist: touching the cluster would fail differently.
    const r = await inject(["--in-cluster", "--url", await closedUrl()], { KUBECONFIG: "/nonexistent" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("error: --url cannot be used with --in-cluster");
    expect(r.stderr).toContain("hint: Run `npm run inject -- --help`");
  });

  it("is documented in --help", async () => {
    const r = await inject(["--help"]);
    expect(r.stdout).toContain("--in-cluster");
    expect(r.stdout).toMatch(/^\s+13 {2}kubectl not found/m);
  });
});
