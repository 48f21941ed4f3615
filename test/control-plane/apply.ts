import { stringify } from "yaml";
import type { K8sObject } from "../k8s/render.ts";
import { objectsOf, type TiltResult } from "../tilt/tilt-result.ts";
import type { ControlPlane } from "./cluster.ts";

/**
 * The strictest Pod Security Standard every kumomta-tilt pod meets. The namespace enforces it; a label in the
 * manifests may repeat it but never weaken it.
 */
export const POD_SECURITY_LEVEL = "restricted";
const PSA_MODES = ["enforce", "warn", "audit"] as const;
const psaLabel = (mode: string) => `pod-security.kubernetes.io/${mode}`;

export const FIELD_MANAGER = "kumomta-tilt-test";

export const toYaml = (objects: K8sObject[]): string => objects.map((o) => stringify(o)).join("---\n");

/** Pure: the Pod Security labels the rendered Namespace objects set, as "name: mode=level" lines. */
export function podSecurityLabels(objects: K8sObject[]): string[] {
  return objects
    .filter((o) => o.kind === "Namespace")
    .flatMap((ns) =>
      PSA_MODES.filter((m) => ns.metadata.labels?.[psaLabel(m)] !== undefined).map(
        (m) => `${ns.metadata.name}: ${m}=${ns.metadata.labels[psaLabel(m)]}`,
      ),
    );
}

/**
 * Pure: a copy whose Namespace objects enforce, warn and audit at `level` for every mode the manifests leave unset
 * (what the manifests set is kept, so a weaker label shows up as a weaker namespace).
 */
export function withPodSecurity(objects: K8sObject[], level = POD_SECURITY_LEVEL): K8sObject[] {
  return objects.map((o) => {
    if (o.kind !== "Namespace") return o;
    const labels = { ...Object.fromEntries(PSA_MODES.map((m) => [psaLabel(m), level])), ...o.metadata.labels };
    return { ...o, metadata: { ...o.metadata, labels } };
  });
}

/** Server-side apply with strict field validation, as one field manager. */
export async function applyServerSide(cp: ControlPlane, objects: K8sObject[], extra: string[] = []) {
  return cp.kubectl(
    ["apply", "--server-side", "--validate=strict", `--field-manager=${FIELD_MANAGER}`, ...extra, "-f", "-"],
    { input: toYaml(objects) },
  );
}

/** kind/namespace/name -> resourceVersion of each object as the API server holds it now. */
export async function resourceVersions(cp: ControlPlane, objects: K8sObject[]): Promise<Record<string, string>> {
  const out = await cp.kubectlOk(["get", "-f", "-", "-o", "json"], { input: toYaml(objects) });
  const parsed = JSON.parse(out) as K8sObject;
  const items: K8sObject[] = parsed.kind === "List" ? parsed.items : [parsed];
  return Object.fromEntries(
    items.map((o) => [`${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`, o.metadata.resourceVersion]),
  );
}

/**
 * Pure: every object the Tiltfile's resources deploy, Namespaces first: Tilt creates a resource's namespace before
 * applying it, while the Namespace itself sits in the last resource (cluster-config).
 */
export function tiltObjects(result: TiltResult): K8sObject[] {
  const objects = result.manifests.flatMap((m) => (m.DeployTarget?.yaml ? objectsOf(m) : []));
  return [...objects.filter((o) => o.kind === "Namespace"), ...objects.filter((o) => o.kind !== "Namespace")];
}
