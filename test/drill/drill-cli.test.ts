/**
 * `npm run drill` end to end: the real CLI and real kubectl against a stand-in API server (the drill's workloads in
 * front of test/inject/stand-in-cluster.ts, which runs the injector's Job here), a stand-in kumod that delivers what
 * it accepts over SMTP to the project's REAL sink, and the sink's real HTTP API for its counts and scenarios.
 */
import { mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { DrillReport } from "../../scripts/lib/drills/report.ts";
import { IN_CLUSTER_KUMOD_URL, IN_CLUSTER_SINK_URL } from "../../scripts/lib/inject-job.ts";
import { FakeKumod } from "../inject/fake-kumod.ts";
import { closedUrl, ROOT } from "../inject/run-inject.ts";
import { type RunningSink, startSink } from "../inject/sink-process.ts";
import { StandInCluster } from "../inject/stand-in-cluster.ts";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";
import { DrillCluster } from "./drill-cluster.ts";

requireTool("kubectl", HOW_TO_GET.kubectl);

const secret = { name: "kumo-http-auth-5f7m2k9h4c", data: { username: "inject", password: "from-the-secret" } };

function drill(args: string[], env: Record<string, string>) {
  return execa("node", ["--import", "tsx", path.join(ROOT, "scripts/drill.ts"), ...args], {
    cwd: ROOT,
    reject: false,
    env: { KUMOMTA_NAMESPACE: "", ...env },
  });
}

const reportOf = (stdout: string) => JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as DrillReport;

let sink: RunningSink;
let transport: nodemailer.Transporter;
let stopped = false;
/** Recipients the stand-in kumod accepts but never delivers: the loss a drill must catch. */
let dropEvery = 0;
let accepted = 0;

/** Delivers like kumod: 4xx (the sink's outage) is retried, 5xx bounces. */
async function deliver(email: string): Promise<void> {
  accepted++;
  if (dropEvery > 0 && accepted % dropEvery === 0) return;
  while (!stopped) {
    try {
      await transport.sendMail({
        envelope: { from: "sender@example.org", to: [email] },
        raw: `From: sender@example.org\r\nTo: ${email}\r\nSubject: drill\r\n\r\nhello\r\n`,
      });
      return;
    } catch (err) {
      const code = (err as { responseCode?: number }).responseCode ?? 0;
      if (code >= 500) return;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

let kumod: FakeKumod;
let dir: string;
let front: DrillCluster | undefined;
let standIn: StandInCluster | undefined;

beforeAll(async () => {
  sink = await startSink();
  transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: sink.smtpPort,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: 4,
  });
  kumod = await new FakeKumod({
    user: secret.data.username,
    password: secret.data.password,
    onAccepted: deliver,
  }).start();
  dir = await mkdtemp(path.join(tmpdir(), "drill-cli-"));
});
afterEach(async () => {
  await front?.close();
  await standIn?.close();
  front = undefined;
  standIn = undefined;
  dropEvery = 0;
});
afterAll(async () => {
  stopped = true;
  transport?.close();
  await kumod?.close();
  await sink?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The stand-in cluster with the drill's workloads; a deleted kumod pod restarts the stand-in kumod with it. */
async function cluster(opts: { without?: string[] } = {}): Promise<DrillCluster> {
  standIn = await new StandInCluster({
    namespace: "kumomta",
    image: "kumomta-tilt-console:tilt-4f1e2d3c4b5a6978",
    secret,
    cwd: ROOT,
    dir,
    rewrite: (a) => (a === IN_CLUSTER_KUMOD_URL ? kumod.url : a === IN_CLUSTER_SINK_URL ? sink.httpUrl : a),
  }).start();
  const upstream = /server: "([^"]+)"/.exec(await readFile(standIn.kubeconfig, "utf8"))?.[1] as string;
  front = await new DrillCluster({
    namespace: "kumomta",
    upstream,
    secretName: secret.name,
    dir,
    settleMs: 800,
    without: opts.without,
    onDelete: (pod) => {
      if (pod.startsWith("kumod-")) void kumod.restart({ afterAccepted: 0, sheddingMs: 300, goneMs: 1000 });
    },
  }).start();
  return front;
}

const load = ["--count", "150", "--rate", "25", "--fault-at", "2s", "--timeout", "30s", "--json"];

describe("npm run drill against a stand-in cluster, with real kubectl and the real sink", () => {
  it("kumod-restart: deletes kumod-0 mid-load, waits for it, and proves every accepted recipient arrived", async () => {
    const c = await cluster();
    const r = await drill(["kumod-restart", ...load], { KUBECONFIG: c.kubeconfig, SINK_HTTP_URL: sink.httpUrl });
    expect(r.exitCode, r.stderr).toBe(0);
    const report = reportOf(r.stdout);
    expect(report).toMatchObject({ drill: "kumod-restart", verdict: "nothing-lost", nothing_lost: true, exit_code: 0 });
    expect(c.faults).toEqual(["delete pod/kumod-0"]);
    const a = report.accounting;
    expect(a?.accepted).toBe(150);
    expect((a?.delivered ?? 0) + (a?.bounced ?? 0)).toBeGreaterThanOrEqual(150);
    // The fault came during the load, and was over once the pod was back (two settle periods: gone, then Ready).
    const f = report.fault;
    expect(f.started_s).toBeGreaterThanOrEqual(2);
    expect(f.started_s).toBeLessThan(report.inject.elapsed_s as number);
    expect((f.ended_s as number) - (f.started_s as number)).toBeGreaterThan(1.5);
    expect(report.kumod_restarts).toBe(0);
    expect(r.stderr).toContain("fault| kubectl delete pod kumod-0 -n kumomta --wait=false");
    expect(r.stderr).toMatch(/fault\| pod\/kumod-0: ready/);
    expect(r.stderr).toMatch(/inject\| job\/inject-x7k2p in namespace kumomta/);
    expect(standIn?.deleted).toEqual(["inject-x7k2p"]);
  });

  it("sink-outage: switches the real sink to outage, restores its scenario, and everything still arrives", async () => {
    const c = await cluster();
    const before = (await (await fetch(`${sink.httpUrl}/api/scenario`)).json()) as { name: string };
    const r = await drill(["sink-outage", ...load.filter((a) => a !== "--json"), "--outage", "2s"], {
      KUBECONFIG: c.kubeconfig,
      SINK_HTTP_URL: sink.httpUrl,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain("drill sink-outage:");
    expect(r.stdout).toContain("NOTHING LOST");
    expect(r.stdout).toMatch(/at the sink \d+ delivered \+ \d+ bounced = 150 of 150 accepted/);
    expect(r.stdout).toContain(`restored    sink scenario ${before.name}`);
    expect(r.stdout).toMatch(/meanwhile {3}the sink settled \d+ recipients in the 2(\.\d)? s window/);
    expect(r.stderr).toContain(`fault| sink scenario: ${before.name} -> outage`);
    const after = (await (await fetch(`${sink.httpUrl}/api/scenario`)).json()) as { name: string };
    expect(after.name).toBe(before.name);
    expect(c.faults).toEqual([]);
  });

  it("dragonfly-restart: scales Dragonfly to 0 and back, and says whether the sink kept receiving", async () => {
    const c = await cluster();
    const r = await drill(["dragonfly-restart", ...load, "--outage", "2s"], {
      KUBECONFIG: c.kubeconfig,
      SINK_HTTP_URL: sink.httpUrl,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(c.faults).toEqual(["scale deployment/dragonfly 0", "scale deployment/dragonfly 1"]);
    const report = reportOf(r.stdout);
    // The stand-in kumod does not need Dragonfly: mail kept arriving while it was away.
    expect(report.delivery_during_fault).toBe("kept-delivering");
    expect(report.during_fault?.delivered).toBeGreaterThan(0);
    expect(report.fault.restored).toBe("deployment/dragonfly scaled back to 1");
    expect(r.stderr).toContain("fault| kubectl rollout status deployment/dragonfly -n kumomta --timeout=30s");
  });

  it("kumod-rollout: restarts the StatefulSet and waits for kubectl rollout status", async () => {
    const c = await cluster();
    const r = await drill(
      ["kumod-rollout", "--count", "200", "--rate", "25", "--fault-at", "2s", "--timeout", "30s", "--json"],
      {
        KUBECONFIG: c.kubeconfig,
        SINK_HTTP_URL: sink.httpUrl,
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    expect(c.faults).toEqual(["rollout restart statefulset/kumod"]);
    const report = reportOf(r.stdout);
    // Three pods one after the other, each Ready after the stand-in's settle time.
    expect((report.fault.ended_s as number) - (report.fault.started_s as number)).toBeGreaterThanOrEqual(2);
    expect(r.stderr).toMatch(/fault\| .*rolling update/);
  });

  it("proxy-restart: deletes proxy-0 (the drill added as one registry entry) and waits for it", async () => {
    const c = await cluster();
    const r = await drill(["proxy-restart", ...load], { KUBECONFIG: c.kubeconfig, SINK_HTTP_URL: sink.httpUrl });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(c.faults).toEqual(["delete pod/proxy-0"]);
    const report = reportOf(r.stdout);
    expect(report).toMatchObject({ verdict: "nothing-lost", fault: { target: "pod/proxy-0" } });
    expect(report.delivery_during_fault).toMatch(/^(kept-delivering|paused)$/);
  });

  it("on Ctrl-C during an outage scales Dragonfly back, stops the injector and deletes its Job (exit 130)", async () => {
    const c = await cluster();
    const run = drill(["dragonfly-restart", "--count", "2000", "--rate", "25", "--fault-at", "1s", "--outage", "5m"], {
      KUBECONFIG: c.kubeconfig,
      SINK_HTTP_URL: sink.httpUrl,
    });
    let err = "";
    run.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString();
    });
    while (!err.includes("holding the outage")) {
      if (run.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    run.kill("SIGINT");
    const r = await run;
    expect(r.exitCode, r.stderr).toBe(130);
    expect(c.faults).toEqual(["scale deployment/dragonfly 0", "scale deployment/dragonfly 1"]);
    expect(r.stderr).toContain("outage cut short (Ctrl-C)");
    expect(r.stderr).toContain("error: interrupted (Ctrl-C): the drill proved nothing");
    expect(standIn?.deleted).toEqual(["inject-x7k2p"]);
  });

  it("catches accepted mail that never reaches the sink: exit 12 with the numbers", async () => {
    const c = await cluster();
    dropEvery = 10;
    const r = await drill(
      ["kumod-restart", "--count", "100", "--rate", "25", "--fault-at", "1s", "--timeout", "3s", "--json"],
      {
        KUBECONFIG: c.kubeconfig,
        SINK_HTTP_URL: sink.httpUrl,
      },
    );
    expect(r.exitCode, r.stderr).toBe(12);
    const report = reportOf(r.stdout);
    expect(report).toMatchObject({ verdict: "incomplete", nothing_lost: false, exit_code: 12 });
    expect(report.accounting?.complete).toBe(false);
    expect(report.error?.message).toMatch(/^10 of 100 accepted recipients did not reach the sink within \d+ s/);
    expect(r.stderr).toContain("error: 10 of 100 accepted recipients did not reach the sink");
  });
});

describe("npm run drill when it cannot run", () => {
  it("says the namespace is missing (exit 15) before starting anything", async () => {
    const c = await cluster();
    const r = await drill(["kumod-restart", "--namespace", "nope", "--json"], {
      KUBECONFIG: c.kubeconfig,
      SINK_HTTP_URL: sink.httpUrl,
    });
    expect(r.exitCode).toBe(15);
    expect(r.stderr).toContain("hint: Run `tilt up`");
    expect(JSON.parse(r.stdout)).toMatchObject({ exit_code: 15 });
    expect(c.faults).toEqual([]);
    expect(standIn?.created).toEqual([]);
  });

  it("says which workload is not deployed (exit 19)", async () => {
    const c = await cluster({ without: ["tsa"] });
    const r = await drill(["tsa-restart"], { KUBECONFIG: c.kubeconfig, SINK_HTTP_URL: sink.httpUrl });
    expect(r.exitCode).toBe(19);
    expect(r.stderr).toContain("error: statefulset/tsa is not in namespace kumomta: nothing to drill");
    expect(standIn?.created).toEqual([]);
  });

  it("says the sink's API does not answer (exit 11), and does nothing", async () => {
    const c = await cluster();
    const r = await drill(["sink-outage"], { KUBECONFIG: c.kubeconfig, SINK_HTTP_URL: await closedUrl() });
    expect(r.exitCode).toBe(11);
    expect(r.stderr).toContain("error: the sink's HTTP API does not answer");
    expect(r.stderr).toContain("port-forward");
    expect(standIn?.created).toEqual([]);
  });

  it("says the cluster is unreachable (exit 14), with --json too", async () => {
    const r = await drill(["kumod-restart", "--json"], {
      KUBECONFIG: path.join(ROOT, "test/drill/no-such-kubeconfig"),
      SINK_HTTP_URL: sink.httpUrl,
    });
    expect(r.exitCode).toBe(14);
    expect(r.stderr).toContain("hint: Start your local cluster");
    expect(JSON.parse(r.stdout)).toMatchObject({ exit_code: 14, error: { message: expect.any(String) } });
  });

  it("says kubectl is missing (exit 13)", async () => {
    const bin = path.join(dir, "bin");
    await mkdir(bin, { recursive: true });
    await symlink(process.execPath, path.join(bin, "node")).catch(() => {});
    const r = await drill(["kumod-restart"], { PATH: bin, SINK_HTTP_URL: sink.httpUrl });
    expect(r.exitCode).toBe(13);
    expect(r.stderr).toContain("kubectl not found");
  });

  it("refuses a fault the load would not reach (exit 2), before touching the cluster", async () => {
    const r = await drill(["kumod-restart", "--count", "100", "--rate", "50", "--fault-at", "5s"], {
      KUBECONFIG: "/nonexistent",
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("error: the fault at 5 s would come after the load ends");
    expect(r.stderr).toContain("hint: Run `npm run drill -- --help`");
  });
});

describe("npm run drill without a cluster", () => {
  it("--dry-run prints the plan and the kubectl commands, and touches nothing", async () => {
    const r = await drill(["dragonfly-restart", "--dry-run", "--namespace", "mail"], { KUBECONFIG: "/nonexistent" });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain("kubectl scale deployment/dragonfly -n mail --replicas=0");
    expect(r.stdout).toContain("npm run inject -- --in-cluster --count 6000 --rate 50");
    expect(r.stdout).toContain("(dry run: nothing was done)");
    const json = await drill(["sink-outage", "--dry-run", "--json"], { KUBECONFIG: "/nonexistent" });
    expect(JSON.parse(json.stdout)).toMatchObject({
      dry_run: true,
      drill: "sink-outage",
      outage_s: 60,
      fault_at_s: 30,
    });
  });

  it("--help lists every drill and the exit codes", async () => {
    const r = await drill(["--help"], {});
    expect(r.exitCode).toBe(0);
    for (const name of [
      "kumod-restart",
      "kumod-rollout",
      "dragonfly-restart",
      "tsa-restart",
      "proxy-restart",
      "sink-outage",
    ])
      expect(r.stdout).toContain(name);
    expect(r.stdout).toMatch(/^\s+12 {2}verify: not every accepted recipient/m);
  });
});
