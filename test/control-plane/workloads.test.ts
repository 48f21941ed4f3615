import { mkdtemp, rm, symlink } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../scripts/lib/exit-codes.ts";
import { StandInKumod, StandInTsa, tsaGmailSuspension } from "../console/stand-ins.ts";
import { type RunningSink, startSink } from "../inject/sink-process.ts";
import type { K8sObject } from "../k8s/render.ts";
import { evaluateTiltfile, toolBin } from "../tilt/tilt-result.ts";
import { applyServerSide, tiltObjects, withPodSecurity } from "./apply.ts";
import { type ControlPlane, startControlPlane, waitFor } from "./cluster.ts";

/**
 * What `tilt up` deploys, on a control plane with a controller manager, a scheduler and kwok nodes: workloads reach
 * their Ready replicas, StatefulSet claims bind, and the tools (status, doctor, reset) work against it through real
 * kubectl. kwok plays the kubelet, so no container runs: a port-forward to a pod's 8000 (kumod), 8008 (tsa) or 8080
 * (KumoProxy) goes through the real API server and kwok's kubelet API to a stand-in on this machine
 * (test/console/stand-ins.ts).
 */
const repoRoot = path.resolve(import.meta.dirname, "../..");
const NS = "kumomta";
const tsx = path.join(repoRoot, "node_modules/.bin/tsx");

const kumodStandIn = new StandInKumod({
  received: { esmtp_listener: 0, http_listener: 7 },
  scheduled: { "example.com": 2 },
  readyQueues: [{ source: "unspecified", site: "sink", ready: 1, connections: 1, delivered: 4, transfail: 0, fail: 0 }],
});
const tsaStandIn = new StandInTsa();
tsaStandIn.suspensions = [tsaGmailSuspension("2099-01-01T00:00:00Z")];
/** KumoProxy's /metrics (port 8080 of the proxy pods, when the proxy component is deployed): no traffic yet. */
const proxyStandIn = http.createServer((_req, res) => res.end("# KumoProxy stand-in: no connections yet\n"));

describe("kumomta-tilt on a control plane with kwok nodes", () => {
  let cp: ControlPlane;
  let sink: RunningSink;
  let deployed: K8sObject[];
  let tiltDir: string;
  const tool = (script: string, args: string[], env: Record<string, string> = {}) =>
    execa(tsx, [path.join("scripts", script), ...args], {
      cwd: repoRoot,
      reject: false,
      stdin: "ignore",
      env: { ...cp.env, SINK_HTTP_URL: sink.httpUrl, KUMOMTA_NAMESPACE: NS, ...env },
      timeout: 240_000,
    });
  const get = async (what: string[]) =>
    JSON.parse(await cp.kubectlOk(["get", ...what, "-n", NS, "-o", "json"])).items as K8sObject[];

  beforeAll(async () => {
    await Promise.all([
      kumodStandIn.start(),
      tsaStandIn.start(),
      new Promise<void>((resolve) => proxyStandIn.listen(0, "127.0.0.1", resolve)),
    ]);
    const port = (url: string) => Number(new URL(url).port);
    [cp, sink] = await Promise.all([
      startControlPlane({
        controllers: true,
        forwards: [
          { port: 8000, to: port(kumodStandIn.url) },
          { port: 8008, to: port(tsaStandIn.url) },
          { port: 8080, to: (proxyStandIn.address() as AddressInfo).port },
        ],
      }),
      startSink(),
    ]);
    const tilt = await evaluateTiltfile([]);
    expect(tilt.exitCode, tilt.stderr).toBe(0);
    deployed = withPodSecurity(tiltObjects(tilt));
    const applied = await applyServerSide(cp, deployed);
    expect(applied.exitCode, applied.stderr).toBe(0);
  }, 180_000);
  afterAll(async () => {
    proxyStandIn.closeAllConnections();
    await Promise.all([
      cp?.stop(),
      sink?.stop(),
      kumodStandIn.close(),
      tsaStandIn.close(),
      new Promise((resolve) => proxyStandIn.close(resolve)),
    ]);
    if (tiltDir) await rm(tiltDir, { recursive: true, force: true });
  });

  it("every Deployment and StatefulSet reaches its desired Ready replicas", async () => {
    const workloads = deployed.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet");
    expect(workloads.map((w) => w.metadata.name)).toEqual(
      expect.arrayContaining(["console", "dragonfly", "kumod", "mx-dns", "sink", "tsa"]),
    );
    let lagging: string[] = [];
    await waitFor(
      "every workload Ready",
      async () => {
        const live = [...(await get(["deployments"])), ...(await get(["statefulsets"]))];
        lagging = workloads
          .map((w) => {
            const l = live.find((x) => x.kind === w.kind && x.metadata.name === w.metadata.name);
            const want = w.spec.replicas ?? 1;
            return (l?.status?.readyReplicas ?? 0) === want ? "" : `${w.kind}/${w.metadata.name}`;
          })
          .filter(Boolean);
        return lagging.length === 0;
      },
      120_000,
    );
    expect(lagging).toEqual([]);
  }, 130_000);

  it("each StatefulSet pod gets its own claim, bound to a provisioned volume", async () => {
    // <template>-<statefulset>-<ordinal>, one per replica and claim template.
    const expected = deployed
      .filter((o) => o.kind === "StatefulSet")
      .flatMap((s) =>
        (s.spec.volumeClaimTemplates ?? []).flatMap((t: K8sObject) =>
          Array.from({ length: s.spec.replicas }, (_, i) => `${t.metadata.name}-${s.metadata.name}-${i}`),
        ),
      );
    expect(expected).toEqual(
      expect.arrayContaining(["spool-kumod-0", "spool-kumod-1", "spool-kumod-2", "state-tsa-0"]),
    );
    const claims = await get(["pvc"]);
    expect(claims.map((c) => c.metadata.name).sort()).toEqual(expected.sort());
    for (const c of claims) {
      expect(c.status.phase, c.metadata.name).toBe("Bound");
      expect(c.metadata.labels?.["app.kubernetes.io/part-of"], c.metadata.name).toBe("kumomta-tilt");
    }
  });

  it("a deleted kumod pod comes back with the same name and the same claim", async () => {
    const claimOf = (pod: K8sObject) =>
      pod.spec.volumes.find((v: K8sObject) => v.name === "spool")?.persistentVolumeClaim?.claimName;
    const [before] = await get(["pod", "-l", "statefulset.kubernetes.io/pod-name=kumod-1"]);
    const claimBefore = JSON.parse(await cp.kubectlOk(["get", "pvc", "spool-kumod-1", "-n", NS, "-o", "json"]));
    // No --wait: the StatefulSet controller recreates the pod within milliseconds, and kubectl's wait for the old
    // UID then sometimes misses the deletion; the new UID below proves it.
    await cp.kubectlOk(["delete", "pod", "kumod-1", "-n", NS, "--wait=false"]);
    let after: K8sObject | undefined;
    await waitFor(
      "kumod-1 back and Ready",
      async () => {
        [after] = await get(["pod", "-l", "statefulset.kubernetes.io/pod-name=kumod-1"]);
        return (
          after !== undefined &&
          after.metadata.uid !== before?.metadata.uid &&
          (after.status?.conditions ?? []).some((c: K8sObject) => c.type === "Ready" && c.status === "True")
        );
      },
      60_000,
    );
    expect(claimOf(after as K8sObject)).toBe("spool-kumod-1");
    expect(claimOf(before as K8sObject)).toBe("spool-kumod-1");
    const claimAfter = JSON.parse(await cp.kubectlOk(["get", "pvc", "spool-kumod-1", "-n", NS, "-o", "json"]));
    expect(claimAfter.metadata.uid).toBe(claimBefore.metadata.uid);
  }, 70_000);

  it("npm run status reads every kumod and tsa pod through kubectl port-forward", async () => {
    const r = await tool("status.ts", ["--json"]);
    expect(r.exitCode, r.stderr).toBe(EXIT.ok);
    const report = JSON.parse(r.stdout);
    const kumods = report.kumod as K8sObject[];
    const tsas = report.tsa as K8sObject[];
    expect(kumods.map((p) => p.name).sort()).toEqual(["kumod-0", "kumod-1", "kumod-2"]);
    expect(tsas.map((p) => p.name).sort()).toEqual(["tsa-0", "tsa-1"]);
    for (const p of kumods) {
      expect(p.ready, p.name).toBe(true);
      expect(p.queues?.delivered, p.name).toBe(4);
    }
    for (const p of tsas) expect(p.suspensions, p.name).toHaveLength(1);
    // The sending IPs: every KumoProxy pod, read through its own port-forward.
    expect(report.proxy.deployed).toBe(true);
    const proxies = report.proxy.pods as K8sObject[];
    expect(proxies.map((p) => p.name).sort()).toEqual(["proxy-0", "proxy-1"]);
    for (const p of proxies) {
      expect(p.ready, p.name).toBe(true);
      expect(p.source, p.name).toBe(p.name);
      expect(p.metrics, p.name).toBeDefined();
    }
    expect(report.sink.error).toBeUndefined();
  }, 120_000);

  it("npm run doctor passes its cluster checks", async () => {
    const r = await tool("doctor.ts", ["--json"]);
    const report = JSON.parse(r.stdout);
    const state = Object.fromEntries((report.checks as K8sObject[]).map((c) => [c.name, `${c.state}: ${c.detail}`]));
    for (const name of ["kubectl", "kube context is local", "cluster reachable", `namespace ${NS}`, "pods ready"])
      expect(state[name], name).toMatch(/^pass: /);
    expect(state["kube context is local"]).toContain("(kind)");
    expect(state["pods ready"]).toMatch(/^pass: \d+ pods ready/);
    // What needs a user's machine fails here: Tilt (the test build is refused), a container runtime, and the
    // port-forwards `tilt up` keeps on localhost (and the credential probe through kumod's). So doctor exits 16.
    const notHere = ["tilt", "container runtime", "kumod port-forward", "credentials accepted by kumod", "tsa healthy"];
    const failed = (report.checks as K8sObject[]).filter((c) => c.state !== "pass").map((c) => c.name);
    expect(notHere, JSON.stringify(report.checks, null, 1)).toEqual(expect.arrayContaining(failed));
    expect(r.exitCode).toBe(EXIT.checksFailed);
  }, 60_000);

  it("npm run reset removes the namespace and the spool claims and leaves nothing behind", async () => {
    // `tilt` on PATH is the source build of Tilt the tests use: `tilt down` is real Tilt code against this cluster.
    tiltDir = await mkdtemp(path.join(tmpdir(), "kumomta-tilt-path-"));
    await symlink(toolBin("tilt-tiltfile-eval"), path.join(tiltDir, "tilt"));
    const r = await tool("reset.ts", ["--yes"], {
      PATH: `${tiltDir}${path.delimiter}${process.env.PATH}`,
      HOME: tiltDir,
      TILT_DISABLE_ANALYTICS: "1",
    });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(EXIT.ok);
    expect(r.stdout).toContain("==> tilt down");
    expect(r.stdout).toContain("==> done");
    expect(await cp.kubectlOk(["get", "pvc", "--all-namespaces", "-o", "name"])).toBe("");
    const ns = await cp.kubectl(["get", "namespace", NS]);
    expect(ns.stderr).toMatch(/NotFound|not found/);
    await waitFor(
      "volumes released and deleted",
      async () => (await cp.kubectlOk(["get", "pv", "-o", "name"])) === "",
      30_000,
    );
  }, 300_000);

  it("npm run reset without tilt deletes the workloads first, so their claims can go too", async () => {
    const applied = await applyServerSide(cp, deployed);
    expect(applied.exitCode, applied.stderr).toBe(0);
    await waitFor(
      "every spool and state claim Bound",
      async () => {
        const claims = await get(["pvc"]);
        return claims.length > 0 && claims.every((c) => c.status?.phase === "Bound");
      },
      120_000,
    );
    // This machine's PATH without any directory that holds a `tilt`.
    const { stdout: which } = await execa(
      "sh",
      ["-c", 'for d in $(echo "$PATH" | tr : " "); do [ -x "$d/tilt" ] && echo "$d"; done'],
      {
        reject: false,
      },
    );
    const withTilt = new Set(which.split("\n").filter(Boolean));
    const noTilt = (process.env.PATH ?? "").split(path.delimiter).filter((d) => !withTilt.has(d));
    const r = await tool("reset.ts", ["--yes"], { PATH: noTilt.join(path.delimiter) });
    expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(EXIT.ok);
    expect(r.stdout).toContain("tilt not on PATH");
    expect(r.stdout).toContain("==> deleting workloads");
    expect(await cp.kubectlOk(["get", "pvc", "--all-namespaces", "-o", "name"])).toBe("");
    expect((await cp.kubectl(["get", "namespace", NS])).stderr).toMatch(/NotFound|not found/);
  }, 300_000);
});
