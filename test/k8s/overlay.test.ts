import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  container,
  editOverlay,
  envValue,
  find,
  type K8sObject,
  render,
  repoRoot,
  runSeed,
  scratchRepo,
} from "./render.ts";

/**
 * The overlay is the one place the namespace and replica counts are written. Each case edits only those lines in a
 * scratch copy of the repository and checks that every dependent value followed: kumod's TSA publish settings
 * (one URL per tsa pod is built from them), the namespace of every object and the Namespace object itself.
 */
const CASES: { tsa: number; kumod: number; namespace: string; namePrefix?: string }[] = [
  { tsa: 1, kumod: 1, namespace: "kumomta" },
  { tsa: 4, kumod: 5, namespace: "mail-dev" },
  { tsa: 5, kumod: 2, namespace: "team-a-kumo" },
  { tsa: 3, kumod: 3, namespace: "prefixed", namePrefix: "dev-" },
];

const setReplicas = (k: K8sObject, name: string, count: number) => {
  const entry = k.replicas.find((r: K8sObject) => r.name === name);
  if (!entry) throw new Error(`the overlay has no replicas entry for ${name}`);
  entry.count = count;
};

/** What kumod's policy builds from its environment: http://<sts>-<i>.<headless>.<ns>.svc.<domain>:<port>. */
function publishUrls(objects: K8sObject[], namespace: string): string[] {
  const c = container(
    objects.find((o) => o.kind === "StatefulSet" && o.metadata.name.endsWith("kumod")) as K8sObject,
    "kumod",
  );
  const get = (name: string) => envValue(c, name) as string;
  return Array.from(
    { length: Number(get("TSA_REPLICAS")) },
    (_, i) =>
      `http://${get("TSA_STS")}-${i}.${get("TSA_HEADLESS")}.${namespace}.svc.${get("CLUSTER_DOMAIN")}:${get("TSA_PORT")}`,
  );
}

describe("changing the overlay's namespace or replica counts in one place", () => {
  const rendered = new Map<(typeof CASES)[number], K8sObject[]>();
  let root: string;

  beforeAll(async () => {
    root = await scratchRepo();
    const seeded = await runSeed(root, ["--quiet"]);
    expect(seeded.exitCode, seeded.stderr).toBe(0);
    for (const c of CASES) {
      await editOverlay(root, (k) => {
        k.namespace = c.namespace;
        setReplicas(k, "tsa", c.tsa);
        setReplicas(k, "kumod", c.kumod);
        if (c.namePrefix) k.namePrefix = c.namePrefix;
      });
      rendered.set(c, await render(root));
    }
  });
  afterAll(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it.each(CASES)("tsa $tsa, kumod $kumod, namespace $namespace, prefix $namePrefix", (c) => {
    const objects = rendered.get(c) as K8sObject[];
    const prefix = c.namePrefix ?? "";
    const tsa = find(objects, "StatefulSet", `${prefix}tsa`);
    const kumod = find(objects, "StatefulSet", `${prefix}kumod`);
    expect(tsa.spec.replicas).toBe(c.tsa);
    expect(kumod.spec.replicas).toBe(c.kumod);
    const env = (name: string) => envValue(container(kumod, "kumod"), name);
    expect(env("TSA_REPLICAS")).toBe(String(c.tsa));
    expect(env("TSA_STS")).toBe(tsa.metadata.name);
    expect(env("TSA_HEADLESS")).toBe(tsa.spec.serviceName);
    expect(find(objects, "Service", env("TSA_HEADLESS") as string).spec.clusterIP).toBe("None");
    expect(find(objects, "Service", env("TSA_SERVICE") as string).spec.clusterIP).toBeUndefined();
    // The pod DNS names a StatefulSet gets: <sts>-<ordinal>.<serviceName>.<namespace>.svc.<domain>.
    const pods = Array.from(
      { length: c.tsa },
      (_, i) => `http://${tsa.metadata.name}-${i}.${tsa.spec.serviceName}.${c.namespace}.svc.cluster.local:8008`,
    );
    expect(publishUrls(objects, c.namespace)).toEqual(pods);
    for (const o of objects.filter((x) => x.kind !== "Namespace")) expect(o.metadata.namespace).toBe(c.namespace);
    expect(objects.filter((o) => o.kind === "Namespace").map((o) => o.metadata.name)).toEqual([c.namespace]);
  });

  it("leaves the working tree's overlay untouched", async () => {
    const objects = await render(repoRoot);
    expect(find(objects, "Namespace", "kumomta")).toBeDefined();
  });
});
