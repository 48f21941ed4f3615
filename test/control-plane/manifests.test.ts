import { readdirSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { injectJob, podArgs } from "../../scripts/lib/inject-job.ts";
import { container, editOverlay, envValue, find, type K8sObject, render, runSeed, scratchRepo } from "../k8s/render.ts";
import { evaluateTiltfile } from "../tilt/tilt-result.ts";
import {
  applyServerSide,
  POD_SECURITY_LEVEL,
  podSecurityLabels,
  resourceVersions,
  tiltObjects,
  toYaml,
  withPodSecurity,
} from "./apply.ts";
import { type ControlPlane, startControlPlane } from "./cluster.ts";

/**
 * Every overlay against a real kube-apiserver (etcd behind it): server-side apply with strict field validation into a
 * namespace that enforces Pod Security at POD_SECURITY_LEVEL, a second apply that changes nothing, then other replica
 * counts over the live objects, as `tilt up -- --mta-replicas N --tsa-replicas M` does. The YAML the Tiltfile hands
 * to Tilt goes through the same API server.
 */
const repoRoot = path.resolve(import.meta.dirname, "../..");
const OVERLAYS = readdirSync(path.join(repoRoot, "k8s/overlays")).map((d) => `k8s/overlays/${d}`);

const warnings = (stderr: string) => stderr.split("\n").filter((l) => /^Warning:/.test(l));

const setReplicas = (k: K8sObject, name: string, count: number) => {
  const entry = k.replicas.find((r: K8sObject) => r.name === name);
  if (!entry) throw new Error(`the overlay has no replicas entry for ${name}`);
  entry.count = count;
};

describe("the manifests on a real API server", () => {
  let cp: ControlPlane;
  let root: string;

  beforeAll(async () => {
    [cp, root] = await Promise.all([startControlPlane(), scratchRepo()]);
    const seeded = await runSeed(root, ["--quiet"]);
    expect(seeded.exitCode, seeded.stderr).toBe(0);
  }, 150_000);
  afterAll(async () => {
    await cp?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it.each(OVERLAYS)("%s: Pod Security labels in the manifests are never weaker than the enforced level", async (o) => {
    const labels = podSecurityLabels(await render(root, o));
    for (const l of labels)
      expect(l, "a weaker label would let pods in that the test cluster refuses").toMatch(
        new RegExp(`=${POD_SECURITY_LEVEL}$`),
      );
  });

  it.each(OVERLAYS)(
    "%s: server-side apply (strict fields, Pod Security enforced) succeeds, and a second apply changes nothing",
    async (overlay) => {
      const objects = withPodSecurity(await render(root, overlay));
      const first = await applyServerSide(cp, objects);
      expect(first.exitCode, first.stderr).toBe(0);
      expect(warnings(first.stderr), "the API server warned (deprecated field or Pod Security)").toEqual([]);
      const before = await resourceVersions(cp, objects);
      const second = await applyServerSide(cp, objects);
      expect(second.exitCode, second.stderr).toBe(0);
      expect(await resourceVersions(cp, objects)).toEqual(before);
      const diff = await cp.kubectl(["diff", "--server-side", "--field-manager=kumomta-tilt-test", "-f", "-"], {
        input: toYaml(objects),
      });
      expect(diff.exitCode, diff.stdout + diff.stderr).toBe(0);
    },
  );

  it.each(OVERLAYS)("%s: other replica counts apply over the live objects", async (overlay) => {
    await editOverlay(root, (k) => {
      setReplicas(k, "kumod", 5);
      setReplicas(k, "tsa", 3);
    });
    try {
      const objects = withPodSecurity(await render(root, overlay));
      const applied = await applyServerSide(cp, objects);
      expect(applied.exitCode, applied.stderr).toBe(0);
      const live = JSON.parse(await cp.kubectlOk(["get", "statefulset", "-n", "kumomta", "-o", "json"])).items;
      const kumod = find(live, "StatefulSet", "kumod");
      expect(kumod.spec.replicas).toBe(5);
      expect(find(live, "StatefulSet", "tsa").spec.replicas).toBe(3);
      expect(envValue(container(kumod, "kumod"), "TSA_REPLICAS")).toBe("3");
    } finally {
      await editOverlay(root, (k) => {
        setReplicas(k, "kumod", 3);
        setReplicas(k, "tsa", 2);
      });
    }
  });

  it.each([
    { label: "no settings", args: [] },
    { label: "--mta-replicas 4 --tsa-replicas 1", args: ["--mta-replicas", "4", "--tsa-replicas", "1"] },
    { label: "--sink-starttls", args: ["--sink-starttls"] },
  ])(
    "the YAML the Tiltfile hands to Tilt ($label) applies",
    async ({ args }: { label: string; args: string[] }) => {
      const result = await evaluateTiltfile(args);
      expect(result.exitCode, result.stderr).toBe(0);
      const objects = withPodSecurity(tiltObjects(result));
      expect(objects.length).toBeGreaterThan(10);
      const applied = await applyServerSide(cp, objects);
      expect(applied.exitCode, applied.stderr).toBe(0);
      expect(warnings(applied.stderr)).toEqual([]);
      if (args.includes("--mta-replicas")) {
        const kumod = JSON.parse(await cp.kubectlOk(["get", "statefulset", "kumod", "-n", "kumomta", "-o", "json"]));
        expect(kumod.spec.replicas).toBe(4);
        expect(envValue(container(kumod, "kumod"), "TSA_REPLICAS")).toBe("1");
      }
    },
    120_000,
  );

  it("the API server refuses a field it does not know, so the applies above prove every field is real", async () => {
    const objects = withPodSecurity(await render(root));
    const kumod = find(objects, "StatefulSet", "kumod");
    container(kumod, "kumod").restartPolicyy = "Always";
    const r = await applyServerSide(cp, [kumod], ["--dry-run=server"]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/containers\[name="kumod"\]\.restartPolicyy: field not declared in schema/);
  });

  it(`admits the Job that \`npm run inject -- --in-cluster\` creates, strictly and at ${POD_SECURITY_LEVEL}`, async () => {
    const { metadata, ...rest } = injectJob({
      namespace: "kumomta",
      image: "kumomta-tilt-console:tilt-0123456789abcdef",
      secretName: "kumo-http-auth-0123456789",
      args: podArgs(["--count", "10"], true),
    }) as K8sObject;
    // Server-side apply needs a name where the CLI lets the API server generate one.
    const job = { ...rest, metadata: { ...metadata, name: "inject-check", generateName: undefined } };
    const r = await applyServerSide(cp, [job], ["--dry-run=server"]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(warnings(r.stderr)).toEqual([]);
  });

  it(`the namespace warns about a pod template that needs more than ${POD_SECURITY_LEVEL}`, async () => {
    const deployment = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "needs-root", namespace: "kumomta" },
      spec: {
        selector: { matchLabels: { app: "needs-root" } },
        template: {
          metadata: { labels: { app: "needs-root" } },
          spec: { containers: [{ name: "c", image: "busybox:1.37", securityContext: { runAsUser: 0 } }] },
        },
      },
    };
    const r = await applyServerSide(cp, [deployment], ["--dry-run=server"]);
    expect(warnings(r.stderr).join("\n")).toMatch(
      new RegExp(`would violate PodSecurity "${POD_SECURITY_LEVEL}:latest"`),
    );
  });
});
