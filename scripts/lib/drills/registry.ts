/**
 * The fault drills of `npm run drill -- NAME`. A drill is data: which workload it hits, which fault (one of a few
 * kinds the runner knows how to apply and undo), the load that spans it, and what KumoMTA promises for it. Adding a
 * drill for another workload is one entry here (`proxy-restart` is the example).
 */

export interface Workload {
  kind: "statefulset" | "deployment";
  name: string;
  /** Its pods' app.kubernetes.io/name label. */
  app: string;
}

export const KUMOD: Workload = { kind: "statefulset", name: "kumod", app: "kumod" };
export const TSA: Workload = { kind: "statefulset", name: "tsa", app: "tsa-daemon" };
export const DRAGONFLY: Workload = { kind: "deployment", name: "dragonfly", app: "dragonfly" };
export const SINK: Workload = { kind: "deployment", name: "sink", app: "sink" };
/** KumoProxy (k8s/components/proxy): each pod is one sending IP, egress source proxy-N. */
export const PROXY: Workload = { kind: "statefulset", name: "proxy", app: "kumoproxy" };

export type Fault =
  /** One pod of a StatefulSet deleted; its controller recreates it under the same name (and claims). */
  | { kind: "delete-pod"; workload: Workload; ordinal: number }
  /** `kubectl rollout restart`, then `kubectl rollout status` until every pod is new and ready. */
  | { kind: "rollout-restart"; workload: Workload }
  /** Scaled to 0 for the outage, then back to its replicas. */
  | { kind: "scale-outage"; workload: Workload }
  /** The sink switched to a scenario (through its HTTP API) for the outage, then the previous one restored. */
  | { kind: "sink-scenario"; scenario: string };

export interface Drill {
  name: string;
  title: string;
  fault: Fault;
  /** Workloads that must exist before the drill starts (the fault's, and what the load goes through). */
  needs: Workload[];
  /** What KumoMTA promises for this fault, and where it says so (files of KumoCorp/kumomta). */
  promise: { text: string; sources: string[] };
  /** Whether to say if the sink kept receiving while the fault lasted (the drill's question for Dragonfly). */
  asksDeliveryDuringFault: boolean;
  defaults: {
    count: number;
    /** Recipients per second. */
    rate: number;
    /** Seconds after the injector starts, or a fraction (below 1) of the planned load duration. */
    faultAt: FaultAt;
    /** How long a held fault (scale-outage, sink-scenario) lasts. */
    outageS?: number;
    /** Time for the faulted workload to come back and for the sink to settle every accepted recipient. */
    timeoutS: number;
  };
}

export type FaultAt = { seconds: number } | { fraction: number };

/** Mail to the provider sites too (mx-dns routes them to the sink's site ports), so TSA has records to act on. */
export const DRILL_DOMAINS = "gmail.com,yahoo.com,outlook.com,example.com";

const SLOW_SHUTDOWN = "docs/faq/slow_shutdown.md";

export const DRILLS: readonly Drill[] = [
  {
    name: "kumod-restart",
    title: "one kumod pod deleted under load",
    fault: { kind: "delete-pod", workload: KUMOD, ordinal: 0 },
    needs: [KUMOD],
    promise: {
      text:
        "A graceful stop (SIGTERM) finishes in-flight deliveries and flushes state to the spool; incomplete sends " +
        "are recovered from the spool on the next start and no messages are lost. Injection answers 503 while it " +
        "stops. The pod comes back with its spool PVC and re-enumerates it (spool_message_enumerated).",
      sources: [
        SLOW_SHUTDOWN,
        "docs/reference/events/spool_message_enumerated.md",
        "docs/userguide/clustering/scaling.md",
      ],
    },
    asksDeliveryDuringFault: false,
    defaults: { count: 6000, rate: 50, faultAt: { fraction: 0.25 }, timeoutS: 300 },
  },
  {
    name: "kumod-rollout",
    title: "rolling restart of every kumod pod under load",
    fault: { kind: "rollout-restart", workload: KUMOD },
    needs: [KUMOD],
    promise: {
      text:
        "Each pod stops gracefully in turn (as kumod-restart): the kumod Service sends new connections to the " +
        "ready pods, and each restarted pod delivers what its spool held.",
      sources: [SLOW_SHUTDOWN, "docs/reference/events/spool_message_enumerated.md"],
    },
    asksDeliveryDuringFault: false,
    defaults: { count: 15000, rate: 50, faultAt: { fraction: 0.1 }, timeoutS: 600 },
  },
  {
    name: "dragonfly-restart",
    title: "Dragonfly (the throttle store) gone for the outage, then back",
    fault: { kind: "scale-outage", workload: DRAGONFLY },
    needs: [DRAGONFLY, KUMOD],
    promise: {
      text:
        "Throttles and connection limits are shared through Redis when configure_redis_throttles is set. The docs " +
        "do not say what kumod does when Redis goes away after start: the drill measures it (did the sink keep " +
        "receiving during the outage?). Spooled mail is not dropped either way.",
      sources: ["docs/reference/kumo/configure_redis_throttles.md", "docs/userguide/clustering/throttles.md"],
    },
    asksDeliveryDuringFault: true,
    defaults: { count: 6000, rate: 50, faultAt: { fraction: 0.25 }, outageS: 30, timeoutS: 300 },
  },
  {
    name: "tsa-restart",
    title: "one tsa-daemon pod deleted under load",
    fault: { kind: "delete-pod", workload: TSA, ordinal: 0 },
    needs: [TSA, KUMOD],
    promise: {
      text:
        "Every kumod publishes its log records to every tsa-daemon; a daemon that is away does not stop " +
        "delivery (kumod does not need TSA to deliver, its publish queues retry), and it picks up again when the " +
        "daemon is back.",
      sources: ["docs/userguide/clustering/trafficshapingautomation.md", "docs/userguide/clustering/deployment.md"],
    },
    asksDeliveryDuringFault: false,
    defaults: { count: 6000, rate: 50, faultAt: { fraction: 0.25 }, timeoutS: 300 },
  },
  {
    name: "proxy-restart",
    title: "one KumoProxy pod (a sending IP) deleted under load",
    fault: { kind: "delete-pod", workload: PROXY, ordinal: 0 },
    needs: [PROXY, KUMOD],
    promise: {
      text:
        "kumod delivers through SOCKS5 proxies to share sending IPs; a connection through a proxy that is away " +
        "fails like any transport error, a transient failure retried by the queue's retry_interval, when the " +
        "egress pool picks a source again (docs/cluster.md, KumoProxy).",
      sources: [
        "docs/userguide/operation/proxy.md",
        "docs/userguide/operation/kumo-proxy.md",
        "docs/reference/kumo/make_queue_config/retry_interval.md",
      ],
    },
    asksDeliveryDuringFault: true,
    defaults: { count: 6000, rate: 50, faultAt: { fraction: 0.25 }, timeoutS: 300 },
  },
  {
    name: "sink-outage",
    title: "the sink refuses every connection (scenario outage), then the previous scenario is back",
    fault: { kind: "sink-scenario", scenario: "outage" },
    needs: [SINK, KUMOD],
    promise: {
      text:
        "A 4xx answer is a transient failure: the message stays queued and is retried with exponential backoff " +
        "from retry_interval (20s here, doubling up to max_retry_interval 1m, policy/queues.toml) until max_age.",
      sources: [
        "docs/reference/kumo/make_queue_config/retry_interval.md",
        "docs/reference/kumo/make_queue_config/max_retry_interval.md",
      ],
    },
    asksDeliveryDuringFault: true,
    defaults: { count: 9000, rate: 50, faultAt: { seconds: 30 }, outageS: 60, timeoutS: 300 },
  },
];

export function findDrill(name: string): Drill | undefined {
  return DRILLS.find((d) => d.name === name);
}

/** Pure: the pod a delete-pod fault hits (StatefulSet pods have stable names). */
export function podName(workload: Workload, ordinal: number): string {
  return `${workload.name}-${ordinal}`;
}

/** Pure: whether a drill holds its fault for an outage (and so takes --outage). */
export function holdsOutage(fault: Fault): boolean {
  return fault.kind === "scale-outage" || fault.kind === "sink-scenario";
}
