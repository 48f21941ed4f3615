/**
 * A small NetworkPolicy evaluator for pods of one namespace (the rules kumomta-tilt uses: podSelector peers,
 * peerless rules, port lists and ranges). Kubernetes semantics: a pod selected by no policy of a direction is open in that
 * direction; once selected, a connection needs one rule that matches both peer and port.
 */
import type { K8sObject } from "./render.ts";

export interface Peer {
  /** Pod labels, or undefined for an address outside the namespace's pods (internet, node, other namespace). */
  labels?: Record<string, string>;
}

const matches = (selector: K8sObject | undefined, labels: Record<string, string> | undefined): boolean => {
  if (labels === undefined) return false;
  if ((selector?.matchExpressions ?? []).length > 0) throw new Error("matchExpressions are not evaluated here");
  return Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels[k] === v);
};

const portAllowed = (ports: K8sObject[] | undefined, port: number, protocol: string): boolean =>
  ports === undefined ||
  ports.some(
    (p) =>
      (p.protocol ?? "TCP") === protocol &&
      (p.port === undefined || p.port === port || (p.endPort !== undefined && port > p.port && port <= p.endPort)),
  );

const peerAllowed = (peers: K8sObject[] | undefined, peer: Peer): boolean => {
  if (peers === undefined || peers.length === 0) return true;
  return peers.some((p) => {
    if (p.namespaceSelector !== undefined || p.ipBlock !== undefined)
      throw new Error("namespaceSelector/ipBlock peers are not evaluated here");
    return matches(p.podSelector, peer.labels);
  });
};

function allowed(
  policies: K8sObject[],
  direction: "Ingress" | "Egress",
  subject: Record<string, string>,
  peer: Peer,
  port: number,
  protocol: string,
): boolean {
  const applying = policies.filter(
    (p) => matches(p.spec.podSelector, subject) && (p.spec.policyTypes ?? ["Ingress"]).includes(direction),
  );
  if (applying.length === 0) return true;
  const rulesKey = direction === "Ingress" ? "ingress" : "egress";
  const peersKey = direction === "Ingress" ? "from" : "to";
  return applying.some((p) =>
    (p.spec[rulesKey] ?? []).some(
      (rule: K8sObject) => peerAllowed(rule[peersKey], peer) && portAllowed(rule.ports, port, protocol),
    ),
  );
}

/** Whether a connection from `from` to `to` on port/protocol passes both the egress and the ingress policies. */
export function connectionAllowed(
  policies: K8sObject[],
  from: Peer,
  to: Peer,
  port: number,
  protocol = "TCP",
): boolean {
  const egress = from.labels === undefined || allowed(policies, "Egress", from.labels, to, port, protocol);
  const ingress = to.labels === undefined || allowed(policies, "Ingress", to.labels, from, port, protocol);
  return egress && ingress;
}

/** Whether any policy of the direction selects the pod. */
export const covered = (policies: K8sObject[], direction: string, labels: Record<string, string>): boolean =>
  policies.some((p) => matches(p.spec.podSelector, labels) && (p.spec.policyTypes ?? ["Ingress"]).includes(direction));
