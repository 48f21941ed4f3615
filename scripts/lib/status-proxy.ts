/**
 * Pure: the sending IPs of `npm run status`. Each KumoProxy pod proxy-N (k8s/components/proxy) is kumod's egress
 * source proxy-N and connects out from its pod IP, so the pod IP is the sending IP the sink (and a real provider)
 * counts by.
 */
import { type PodInfo, parsePods } from "./kubectl.ts";
import type { Sample } from "./prometheus.ts";
import type { SinkClientCounts, SinkStats } from "./sink-api.ts";

export interface ProxyPod extends PodInfo {
  /** The pod IP, i.e. the sending IP; absent until the pod is scheduled and has one. */
  ip?: string;
}

/** Pods from `kubectl get pods -o json`, with their IPs. */
export function parseProxyPods(json: string): ProxyPod[] {
  const list = JSON.parse(json) as { items?: { metadata: { name: string }; status?: { podIP?: string } }[] };
  const ips = new Map((list.items ?? []).map((p) => [p.metadata.name, p.status?.podIP]));
  return parsePods(json).map((p) => {
    const ip = ips.get(p.name);
    return ip ? { ...p, ip } : p;
  });
}

export interface ProxyMetrics {
  /** Proxied connections open now (kumod's SMTP sessions through this IP). */
  active: number;
  /** Connections kumod opened to the proxy since it started. */
  accepted: number;
  /** Sessions that ended cleanly. */
  completed: number;
  /** Failed SOCKS handshakes, timeouts and I/O errors while proxying. */
  failed: number;
}

const sum = (samples: readonly Sample[], name: string) =>
  samples.reduce((n, s) => (s.name === name && Number.isFinite(s.value) ? n + s.value : n), 0);

/**
 * From KumoProxy's /metrics (KumoCorp/kumomta docs/reference/metrics/proxy-server), summed over its listeners. The
 * active gauge is pruned while it reads 0, so its absence is 0.
 */
export function proxyMetrics(samples: readonly Sample[]): ProxyMetrics {
  return {
    active: sum(samples, "proxy_active_connections"),
    accepted: sum(samples, "proxy_connections_accepted_total"),
    completed: sum(samples, "proxy_connections_completed_total"),
    failed: sum(samples, "proxy_connections_failed_total"),
  };
}

export type SinkIpCounts = NonNullable<SinkStats["clients"]>[string];

/** What the sink counted for one sending IP; undefined when it has not connected (or the sink is older). */
export function sinkCountsFor(ip: string | undefined, stats: SinkStats | undefined): SinkIpCounts | undefined {
  if (ip === undefined || !stats?.clients) return undefined;
  // The sink names an IPv4-mapped IPv6 peer as plain IPv4 and IPv6 in lower case (sink/src/clients.ts).
  return stats.clients[ip.toLowerCase()];
}

/**
 * The sink's client IPs that are no proxy pod's: kumod's own pod IPs (the `direct` source), pods replaced since
 * (a new pod gets a new IP; the sink keeps counting the old one), other clients, and `_other` past SINK_MAX_CLIENTS.
 */
export function otherSinkClients(
  stats: SinkStats | undefined,
  proxies: readonly ProxyPod[],
): { ip: string; counts: SinkClientCounts }[] {
  const mine = new Set(proxies.flatMap((p) => (p.ip ? [p.ip.toLowerCase()] : [])));
  return Object.entries(stats?.clients ?? {})
    .filter(([ip]) => !mine.has(ip))
    .map(([ip, { connections, messages, recipients }]) => ({ ip, counts: { connections, messages, recipients } }));
}
