import { cp, mkdir, mkdtemp, readFile, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { parseAllDocuments, parse as parseYaml, stringify } from "yaml";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";

export const repoRoot = path.resolve(import.meta.dirname, "../..");
export const LOCAL_OVERLAY = "k8s/overlays/local";

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects are checked field by field
export type K8sObject = Record<string, any>;

/** Runs the real seed script of the repository at `root` (a copy has its own scripts/ and .env). */
export async function runSeed(root: string, args: string[] = []) {
  return execa(path.join(repoRoot, "node_modules/.bin/tsx"), [path.join(root, "scripts/seed.ts"), ...args], {
    cwd: root,
    reject: false,
  });
}

/** `kubectl kustomize` of one overlay directory, parsed. */
export async function render(root: string, overlay: string = LOCAL_OVERLAY): Promise<K8sObject[]> {
  requireTool("kubectl", HOW_TO_GET.kubectl);
  const out = await execa("kubectl", ["kustomize", path.join(root, overlay)], { reject: false });
  if (out.exitCode !== 0) throw new Error(`kubectl kustomize ${overlay} failed:\n${out.stderr}`);
  return parseAllDocuments(out.stdout).map((d) => d.toJS() as K8sObject);
}

/**
 * A scratch copy of everything the overlays read (k8s/, policy/, sink/config/) plus scripts/, with node_modules
 * linked, so tests can edit the overlay or run seed without touching the working tree.
 */
export async function scratchRepo(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), "kumomta-tilt-k8s-"));
  for (const dir of ["k8s", "policy", "sink/config", "scripts"]) {
    await mkdir(path.dirname(path.join(root, dir)), { recursive: true });
    await cp(path.join(repoRoot, dir), path.join(root, dir), {
      recursive: true,
      filter: (src) => !src.includes(`${path.sep}secrets`),
    });
  }
  await symlink(path.join(repoRoot, "node_modules"), path.join(root, "node_modules"));
  return root;
}

/** Edits the scratch copy's local overlay kustomization (the one place replicas and namespace are written). */
export async function editOverlay(root: string, edit: (k: K8sObject) => void): Promise<void> {
  const file = path.join(root, LOCAL_OVERLAY, "kustomization.yaml");
  const k = parseYaml(await readFile(file, "utf8")) as K8sObject;
  edit(k);
  await writeFile(file, stringify(k));
}

export const find = (objects: K8sObject[], kind: string, name: string): K8sObject => {
  const obj = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!obj) throw new Error(`${kind}/${name} is not in the rendered output`);
  return obj;
};

/** Generated names carry a content hash suffix; this finds the object by its generator name. */
export const findGenerated = (objects: K8sObject[], kind: string, base: string): K8sObject => {
  const obj = objects.find((o) => o.kind === kind && new RegExp(`^${base}(-[a-z0-9]{10})?$`).test(o.metadata?.name));
  if (!obj) throw new Error(`${kind} generated from ${base} is not in the rendered output`);
  return obj;
};

export const WORKLOAD_KINDS = ["StatefulSet", "Deployment"];
export const workloads = (objects: K8sObject[]) => objects.filter((o) => WORKLOAD_KINDS.includes(o.kind));
export const containers = (w: K8sObject): K8sObject[] => w.spec.template.spec.containers;
export const container = (w: K8sObject, name: string): K8sObject => {
  const c = containers(w).find((x) => x.name === name);
  if (!c) throw new Error(`container ${name} is not in ${w.kind}/${w.metadata.name}`);
  return c;
};
export const envValue = (c: K8sObject, name: string): string | undefined =>
  (c.env ?? []).find((e: K8sObject) => e.name === name)?.value;
