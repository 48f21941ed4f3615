/**
 * Reads what a pod would get from the rendered manifests: its command, its environment (values, downward API,
 * Secret and ConfigMap keys) and its volumes. The real-binary tier takes everything from here, so the manifests stay
 * the one source of truth for how kumod and tsa-daemon are started.
 */
import type { K8sObject } from "../../k8s/render.ts";

export interface PodIdentity {
  name: string;
  namespace: string;
}

export type VolumeSource =
  | { kind: "emptyDir" }
  | { kind: "claim"; claim: string }
  | { kind: "files"; files: Record<string, string>; mode: number; secret: boolean };

export interface ResolvedMount {
  name: string;
  mountPath: string;
  readOnly: boolean;
  source: VolumeSource;
}

const byKindName = (objects: K8sObject[], kind: string, name: string): K8sObject => {
  const found = objects.find((o) => o.kind === kind && o.metadata?.name === name);
  if (!found) throw new Error(`${kind}/${name} is referenced but not rendered`);
  return found;
};

const secretData = (objects: K8sObject[], name: string): Record<string, string> => {
  const secret = byKindName(objects, "Secret", name);
  const out: Record<string, string> = { ...(secret.stringData ?? {}) };
  for (const [k, v] of Object.entries<string>(secret.data ?? {})) out[k] = Buffer.from(v, "base64").toString("utf8");
  return out;
};

export function workload(objects: K8sObject[], kind: string, name: string): K8sObject {
  return byKindName(objects, kind, name);
}

export function containerOf(w: K8sObject, name?: string): K8sObject {
  const containers: K8sObject[] = w.spec.template.spec.containers;
  const c = name ? containers.find((x) => x.name === name) : containers[0];
  if (!c) throw new Error(`container ${name} not in ${w.kind}/${w.metadata.name}`);
  return c;
}

export function resolveEnv(objects: K8sObject[], c: K8sObject, pod: PodIdentity): Record<string, string> {
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.fieldRef) {
      const field = e.valueFrom.fieldRef.fieldPath;
      if (field === "metadata.namespace") env[e.name] = pod.namespace;
      else if (field === "metadata.name") env[e.name] = pod.name;
      else throw new Error(`downward API field ${field} is not simulated`);
    } else if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef;
      const value = secretData(objects, ref.name)[ref.key];
      if (value === undefined) throw new Error(`env ${e.name}: Secret ${ref.name} has no key ${ref.key}`);
      env[e.name] = value;
    } else if (e.valueFrom?.configMapKeyRef) {
      const ref = e.valueFrom.configMapKeyRef;
      env[e.name] = byKindName(objects, "ConfigMap", ref.name).data[ref.key];
    } else throw new Error(`env ${e.name}: unsupported source`);
  }
  return env;
}

export function resolveMounts(objects: K8sObject[], w: K8sObject, c: K8sObject): ResolvedMount[] {
  const volumes: K8sObject[] = w.spec.template.spec.volumes ?? [];
  const claims: K8sObject[] = w.spec.volumeClaimTemplates ?? [];
  return (c.volumeMounts ?? []).map((m: K8sObject): ResolvedMount => {
    const base = { name: m.name, mountPath: m.mountPath, readOnly: m.readOnly === true };
    const v = volumes.find((x) => x.name === m.name);
    if (!v) {
      if (claims.some((x) => x.metadata.name === m.name)) return { ...base, source: { kind: "claim", claim: m.name } };
      throw new Error(`volume ${m.name} of ${w.metadata.name} is neither a volume nor a claim template`);
    }
    if (v.emptyDir) return { ...base, source: { kind: "emptyDir" } };
    if (v.configMap) {
      const files = byKindName(objects, "ConfigMap", v.configMap.name).data as Record<string, string>;
      return { ...base, source: { kind: "files", files, mode: v.configMap.defaultMode ?? 0o644, secret: false } };
    }
    if (v.secret) {
      const files = secretData(objects, v.secret.secretName);
      return { ...base, source: { kind: "files", files, mode: v.secret.defaultMode ?? 0o644, secret: true } };
    }
    throw new Error(`volume ${m.name}: unsupported type`);
  });
}

/** Pod names of a workload: StatefulSet ordinals; a Deployment's pods get the same form here. */
export function podNames(w: K8sObject): string[] {
  const replicas: number = w.spec.replicas ?? 1;
  return Array.from({ length: replicas }, (_, i) => `${w.metadata.name}-${i}`);
}

/**
 * /etc/hosts lines for cluster DNS: each Service's FQDN maps to the IPs of the pods its selector matches, or to its
 * ClusterIP when it has one here (`serviceIps`), and a headless Service of a StatefulSet also gets one name per pod
 * (`<pod>.<service>.<ns>.svc.<domain>`).
 */
export function clusterHosts(
  objects: K8sObject[],
  namespace: string,
  clusterDomain: string,
  podIps: Map<string, { ip: string; labels: Record<string, string>; workload: string }>,
  serviceIps: Map<string, string> = new Map(),
): string {
  const lines: string[] = [];
  for (const svc of objects.filter((o) => o.kind === "Service")) {
    const fqdn = `${svc.metadata.name}.${namespace}.svc.${clusterDomain}`;
    const clusterIp = serviceIps.get(svc.metadata.name);
    if (clusterIp !== undefined) {
      lines.push(`${clusterIp} ${fqdn}`);
      continue;
    }
    const selector: Record<string, string> = svc.spec.selector ?? {};
    const pods = [...podIps.entries()].filter(([, p]) => Object.entries(selector).every(([k, v]) => p.labels[k] === v));
    for (const [podName, p] of pods) {
      lines.push(`${p.ip} ${fqdn}`);
      if (svc.spec.clusterIP === "None") lines.push(`${p.ip} ${podName}.${fqdn}`);
    }
  }
  return `127.0.0.1 localhost\n${lines.join("\n")}\n`;
}

/** The label the StatefulSet controller adds to each of its pods, which per-pod Services select. */
export const POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name";

/** The labels a pod of `w` named `pod` carries: its template's, plus the controller's for a StatefulSet. */
export function podLabels(w: K8sObject, pod: string): Record<string, string> {
  const labels = { ...w.spec.template.metadata.labels };
  if (w.kind === "StatefulSet") labels[POD_NAME_LABEL] = pod;
  return labels;
}
