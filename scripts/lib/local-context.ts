/**
 * Whether a kube context points at a local development cluster, by the same product rules Tilt applies
 * (tilt-dev/tilt internal/k8s/env.go: ProductFromContext matches the context's cluster name), plus OrbStack.
 * Pure.
 */
const RULES: { product: string; test: (name: string) => boolean }[] = [
  { product: "minikube", test: (n) => n.startsWith("minikube") },
  {
    product: "docker-desktop",
    test: (n) => n.startsWith("docker-for-desktop-cluster") || n.startsWith("docker-desktop"),
  },
  { product: "kind", test: (n) => n === "kind" || n.startsWith("kind-") },
  { product: "microk8s", test: (n) => n.startsWith("microk8s") },
  { product: "crc", test: (n) => n.startsWith("api-crc-testing") },
  { product: "krucible", test: (n) => n.startsWith("krucible-") },
  { product: "k3d", test: (n) => n.startsWith("k3d-") },
  { product: "rancher-desktop", test: (n) => n.startsWith("rancher-desktop") },
  { product: "colima", test: (n) => n.startsWith("colima") },
  { product: "orbstack", test: (n) => n === "orbstack" },
];

/** The local product a cluster/context name belongs to, or undefined for anything that may be remote. */
export function localProduct(clusterName: string, contextName = clusterName): string | undefined {
  for (const name of [clusterName, contextName]) {
    const rule = RULES.find((r) => r.test(name));
    if (rule) return rule.product;
  }
  return undefined;
}

export const LOCAL_PRODUCTS = RULES.map((r) => r.product);
