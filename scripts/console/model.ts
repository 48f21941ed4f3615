/**
 * Pure: turns one round of readings (every kumod pod's /metrics, tsa-daemon, the sink) into what the console page
 * shows. Names and label formats follow kumomta.md §4: ready queues are `<source>-><site>@smtp_client` and their
 * metrics carry them as `service="smtp_client:<ready queue>"`.
 */
import { type KumodQueueSummary, kumodQueueSummary, type Sample } from "../lib/prometheus.ts";
import type { SinkCounts, SinkStats } from "../lib/sink-api.ts";
import { suspensionList } from "../lib/tsa.ts";
import type { ShapingOverride } from "../lib/tsa-config.ts";

export interface PodReading {
  id: string;
  url: string;
  samples?: Sample[];
  error?: string;
}

export interface PodView {
  id: string;
  url: string;
  /** Absent when the pod could not be read: the page shows the error, never zeros. */
  queues?: Omit<KumodQueueSummary, "topScheduled" | "topReady">;
  error?: string;
}

export interface DomainView {
  domain: string;
  /** Messages in scheduled queues for the domain, over the pods that answered (null: no pod answered). */
  scheduled: number | null;
  /** The sink's recipient outcomes for the domain since it started (absent: sink unreachable or no traffic). */
  sink?: SinkCounts;
  /** The same outcomes over the last RECENT_WINDOW_MS: the most recent replies the sink gave. */
  recent?: SinkCounts;
}

export interface SiteView {
  site: string;
  source: string;
  ready: number;
  connections: number;
  delivered: number;
  transfail: number;
  fail: number;
  /** Messages per second since the previous reading (null until two readings of a pod compare). */
  rates?: { delivered: number | null; transfail: number | null; fail: number | null };
}

export interface ProviderView {
  provider: string;
  queued: number;
  connections: number;
  delivered: number;
  transfail: number;
  fail: number;
}

export interface SuspensionView {
  /** "ready queue" (a source->site pair) or "scheduled queue" (a domain, tenant or campaign). */
  scope: string;
  site?: string;
  source?: string;
  domain?: string;
  tenant?: string;
  campaign?: string;
  reason: string;
  expires: string;
}

export interface FlowPoint {
  /** Unix seconds (uPlot's x axis). */
  t: number;
  /** Messages per second, summed over the pods that could be compared with their previous reading. */
  injected: number | null;
  delivered: number | null;
  deferred: number | null;
  bounced: number | null;
  scheduled: number | null;
  ready: number | null;
}

export interface ConsoleState {
  at: string;
  intervalMs: number;
  kumod: { pods: PodView[]; reachable: number; totals?: PodView["queues"]; discoveryError?: string };
  domains: DomainView[];
  sites: SiteView[];
  providers: ProviderView[];
  tsa: { url: string; error?: string; suspensions: SuspensionView[]; overrides: ShapingOverride[] };
  sink: { url: string; error?: string; stats?: SinkStats; available?: string[] };
  history: { [K in keyof FlowPoint]: FlowPoint[K][] };
}

/** Deliveries to mail destinations only: the TSA publish hook's own deliveries have other services. */
const isMailService = (service: string | undefined) => service === undefined || service.startsWith("smtp_client:");
/** Injections: kumod's SMTP and HTTP listeners (esmtp_listener, http_listener). */
const isListener = (service: string | undefined) => service?.endsWith("_listener") === true;

/** The samples kumodQueueSummary should add up: mail queues and listeners, not log hooks. */
export function mailSamples(samples: readonly Sample[]): Sample[] {
  return samples.filter((s) =>
    s.name === "total_messages_received" ? isListener(s.labels.service) : isMailService(s.labels.service),
  );
}

/** `smtp_client:<source>-><site>@smtp_client` → source and site; null for other protocols. */
export function parseReadyQueueService(service: string): { source: string; site: string } | null {
  const prefix = "smtp_client:";
  if (!service.startsWith(prefix)) return null;
  const name = service.slice(prefix.length).replace(/@smtp_client$/, "");
  const arrow = name.indexOf("->");
  if (arrow < 0) return { source: "unspecified", site: name };
  return { source: name.slice(0, arrow), site: name.slice(arrow + 2) };
}

/** The recipient domain of a scheduled queue `[campaign:][tenant@]domain[!routing_domain]`; null for hook queues. */
export function queueDomain(queue: string): string | null {
  if (queue.includes("://")) return null;
  const name = queue.split("!")[0] as string;
  const at = name.lastIndexOf("@");
  if (at >= 0) return name.slice(at + 1);
  const colon = name.lastIndexOf(":");
  return colon >= 0 ? name.slice(colon + 1) : name;
}

function summary(samples: readonly Sample[]): NonNullable<PodView["queues"]> {
  const { topScheduled: _s, topReady: _r, ...rest } = kumodQueueSummary(mailSamples(samples), 0);
  return rest;
}

function add<T extends Record<string, number>>(into: T, from: T): void {
  for (const k of Object.keys(from) as (keyof T)[]) (into[k] as number) += from[k] as number;
}

export function podViews(readings: readonly PodReading[]): PodView[] {
  return readings.map((r) =>
    r.samples ? { id: r.id, url: r.url, queues: summary(r.samples) } : { id: r.id, url: r.url, error: r.error },
  );
}

export function kumodTotals(pods: readonly PodView[]): PodView["queues"] {
  const answered = pods.filter((p) => p.queues);
  if (answered.length === 0) return undefined;
  const total = {
    scheduled: 0,
    ready: 0,
    connections: 0,
    delivered: 0,
    transientFailures: 0,
    permanentFailures: 0,
    received: 0,
  };
  for (const p of answered) add(total, p.queues as typeof total);
  return total;
}

export function siteViews(readings: readonly PodReading[]): SiteView[] {
  const sites = new Map<string, SiteView>();
  const field: Record<string, keyof SiteView> = {
    ready_count: "ready",
    connection_count: "connections",
    total_messages_delivered: "delivered",
    total_messages_transfail: "transfail",
    total_messages_fail: "fail",
  };
  for (const r of readings)
    for (const s of r.samples ?? []) {
      const f = field[s.name];
      const parsed = f && s.labels.service ? parseReadyQueueService(s.labels.service) : null;
      if (!f || !parsed || !Number.isFinite(s.value)) continue;
      const key = siteKey(parsed);
      let v = sites.get(key);
      if (!v) {
        v = { ...parsed, ready: 0, connections: 0, delivered: 0, transfail: 0, fail: 0 };
        sites.set(key, v);
      }
      (v[f] as number) += s.value;
    }
  return [...sites.values()].sort((a, b) => a.site.localeCompare(b.site) || a.source.localeCompare(b.source));
}

export function providerViews(readings: readonly PodReading[]): ProviderView[] {
  const providers = new Map<string, ProviderView>();
  const field: Record<string, keyof ProviderView> = {
    queued_count_by_provider: "queued",
    connection_count_by_provider: "connections",
    total_messages_delivered_by_provider: "delivered",
    total_messages_transfail_by_provider: "transfail",
    total_messages_fail_by_provider: "fail",
  };
  for (const r of readings)
    for (const s of r.samples ?? []) {
      const f = field[s.name];
      const provider = s.labels.provider;
      if (!f || provider === undefined || !Number.isFinite(s.value)) continue;
      let v = providers.get(provider);
      if (!v) {
        v = { provider, queued: 0, connections: 0, delivered: 0, transfail: 0, fail: 0 };
        providers.set(provider, v);
      }
      (v[f] as number) += s.value;
    }
  return [...providers.values()].sort((a, b) => a.provider.localeCompare(b.provider));
}

export function domainViews(
  readings: readonly PodReading[],
  sink: SinkStats | undefined,
  recent: Record<string, SinkCounts> | undefined,
): DomainView[] {
  const anyPod = readings.some((r) => r.samples);
  const scheduled = new Map<string, number>();
  for (const r of readings)
    for (const s of r.samples ?? []) {
      if (s.name !== "scheduled_count" || !Number.isFinite(s.value)) continue;
      const domain = queueDomain(s.labels.queue ?? "");
      if (domain) scheduled.set(domain, (scheduled.get(domain) ?? 0) + s.value);
    }
  const names = new Set([...scheduled.keys(), ...Object.keys(sink?.domains ?? {})]);
  return [...names].sort().map((domain) => {
    const view: DomainView = { domain, scheduled: anyPod ? (scheduled.get(domain) ?? 0) : null };
    const counts = sink?.domains[domain];
    if (counts) view.sink = { ...counts };
    const r = recent?.[domain];
    if (r) view.recent = r;
    return view;
  });
}

/** TSA's suspensions ({"ready_q": [...]}, or a bare array) as rows; unknown fields are ignored. */
export function suspensionViews(json: unknown): SuspensionView[] {
  const str = (o: Record<string, unknown>, k: string) => (typeof o[k] === "string" ? (o[k] as string) : undefined);
  return suspensionList(json)
    .filter((x): x is Record<string, unknown> => typeof x === "object" && x !== null)
    .map((o) => {
      const view: SuspensionView = {
        scope: str(o, "site_name") !== undefined ? "ready queue" : "scheduled queue",
        reason: str(o, "reason") ?? "",
        expires: str(o, "expires") ?? "",
      };
      for (const [from, to] of [
        ["site_name", "site"],
        ["source", "source"],
        ["domain", "domain"],
        ["tenant", "tenant"],
        ["campaign", "campaign"],
      ] as const) {
        const v = str(o, from);
        if (v !== undefined) view[to] = v;
      }
      // tsa-daemon names a ready queue in full (`source->site@smtp_client`); the row shows its site.
      const readyQueue = view.site === undefined ? null : parseReadyQueueService(`smtp_client:${view.site}`);
      if (readyQueue && view.site?.includes("->")) view.site = readyQueue.site;
      return view;
    })
    .sort((a, b) => a.expires.localeCompare(b.expires));
}

/**
 * Rates from counters that each pod reports. Each (pod, key) is compared with its own previous reading; a pod that
 * was unreachable (or is new) only sets a baseline, and a counter that went down means the pod restarted, so its
 * whole value is new. The rates of one key are summed over the pods; a key no pod could compare has no rate.
 */
export class RateTracker {
  private last = new Map<string, { at: number; values: number[] }>();

  step(at: number, readings: readonly { pod: string; key: string; values: number[] }[]): Map<string, number[]> {
    const rates = new Map<string, number[]>();
    const next = new Map<string, { at: number; values: number[] }>();
    for (const r of readings) {
      const id = `${r.pod}\u0000${r.key}`;
      const prev = this.last.get(id);
      next.set(id, { at, values: r.values });
      if (!prev || at <= prev.at) continue;
      const seconds = (at - prev.at) / 1000;
      const sum = rates.get(r.key) ?? r.values.map(() => 0);
      r.values.forEach((v, i) => {
        const before = prev.values[i] ?? 0;
        sum[i] = (sum[i] as number) + (v >= before ? v - before : v) / seconds;
      });
      rates.set(r.key, sum);
    }
    // Only what was read this time is kept: a pod that failed starts again from a baseline.
    this.last = next;
    return rates;
  }
}

/** The flow chart's rates: kumod's mail counters, summed over the pods. */
export class FlowTracker {
  private readonly rates = new RateTracker();

  step(at: number, pods: readonly PodView[]): Omit<FlowPoint, "t" | "scheduled" | "ready"> {
    const readings = pods.flatMap((p) =>
      p.queues
        ? [
            {
              pod: p.id,
              key: "flow",
              values: [p.queues.received, p.queues.delivered, p.queues.transientFailures, p.queues.permanentFailures],
            },
          ]
        : [],
    );
    const r = this.rates.step(at, readings).get("flow");
    if (!r) return { injected: null, delivered: null, deferred: null, bounced: null };
    const [injected, delivered, deferred, bounced] = r as [number, number, number, number];
    return { injected, delivered, deferred, bounced };
  }
}

/** Per ready queue (source->site) delivery rates, so one source's or one site's pause shows as exactly that. */
export class SiteRates {
  private readonly rates = new RateTracker();

  step(at: number, readings: readonly PodReading[], sites: SiteView[]): void {
    const perPod = readings.flatMap((r) =>
      r.samples
        ? siteViews([r]).map((v) => ({ pod: r.id, key: siteKey(v), values: [v.delivered, v.transfail, v.fail] }))
        : [],
    );
    const rates = this.rates.step(at, perPod);
    for (const site of sites) {
      const [delivered, transfail, fail] = rates.get(siteKey(site)) ?? [null, null, null];
      site.rates = { delivered: delivered ?? null, transfail: transfail ?? null, fail: fail ?? null };
    }
  }
}

export const siteKey = (v: Pick<SiteView, "source" | "site">) => `${v.source}->${v.site}`;

/** The sink's per-domain outcomes over a sliding window, from successive /api/stats readings. */
export class SinkRecent {
  private readonly snapshots: { at: number; startedAt: string; domains: Record<string, SinkCounts> }[] = [];

  constructor(private readonly windowMs: number) {}

  step(at: number, stats: SinkStats | undefined): Record<string, SinkCounts> | undefined {
    if (!stats) return undefined;
    // A restarted sink starts its counters again: older snapshots no longer compare.
    if (this.snapshots.some((s) => s.startedAt !== stats.started_at)) this.snapshots.length = 0;
    this.snapshots.push({ at, startedAt: stats.started_at, domains: stats.domains });
    while (this.snapshots.length > 1 && (this.snapshots[1] as { at: number }).at <= at - this.windowMs)
      this.snapshots.shift();
    const base = (this.snapshots[0] as { domains: Record<string, SinkCounts> }).domains;
    const out: Record<string, SinkCounts> = {};
    for (const [domain, now] of Object.entries(stats.domains)) {
      const then = base[domain] ?? { accepted: 0, deferred: 0, bounced: 0 };
      out[domain] = {
        accepted: now.accepted - then.accepted,
        deferred: now.deferred - then.deferred,
        bounced: now.bounced - then.bounced,
      };
    }
    return out;
  }
}

/** A fixed number of the latest points, as the column arrays uPlot draws. */
export class FlowHistory {
  private readonly points: FlowPoint[] = [];

  constructor(private readonly size: number) {}

  push(p: FlowPoint): void {
    this.points.push(p);
    if (this.points.length > this.size) this.points.shift();
  }

  columns(): ConsoleState["history"] {
    const col = <K extends keyof FlowPoint>(k: K) => this.points.map((p) => p[k]);
    return {
      t: col("t"),
      injected: col("injected"),
      delivered: col("delivered"),
      deferred: col("deferred"),
      bounced: col("bounced"),
      scheduled: col("scheduled"),
      ready: col("ready"),
    };
  }
}
