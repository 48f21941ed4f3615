/** I/O: one round of readings from every kumod pod, tsa-daemon and the sink. Every failure becomes an error text. */
import { lookup, reverse } from "node:dns/promises";
import { parsePrometheus } from "../lib/prometheus.ts";
import { getScenario, getSinkStats, type SinkStats } from "../lib/sink-api.ts";
import type { PodReading } from "./model.ts";

/** How the console finds kumod pods: fixed URLs (loopback port-forwards, tests) or every A record of a name. */
export type KumodTargets = { kind: "urls"; urls: string[] } | { kind: "dns"; host: string; port: number };

export interface Target {
  id: string;
  url: string;
}

const reason = (err: unknown): string => {
  const e = err as Error & { cause?: { code?: string; message?: string } };
  if (e.name === "TimeoutError") return "no answer within the timeout";
  return e.cause?.code ?? e.cause?.message ?? e.message;
};

async function getText(url: string, timeoutMs: number): Promise<string> {
  const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  const text = await res.text();
  if (res.status === 401)
    throw new Error("HTTP 401: not a trusted peer (kumod and tsa-daemon trust loopback and the pod network only)");
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.trim().slice(0, 200)}`);
  return text;
}

export interface Resolver {
  /** Every IPv4 address of a name, through the system resolver (search domains apply, as in a pod). */
  addresses(host: string): Promise<string[]>;
  /** PTR names of an address. */
  names(ip: string): Promise<string[]>;
}

const systemResolver: Resolver = {
  addresses: async (host) => (await lookup(host, { all: true, family: 4 })).map((a) => a.address),
  names: (ip) => reverse(ip),
};

/**
 * Pods found through a headless Service. A pod that leaves DNS (not ready, deleted, restarting) stays listed as
 * unreachable for `forgetAfterMs`, so a pod going away shows as such instead of silently disappearing.
 */
export class DnsDiscovery {
  private readonly names = new Map<string, string>();
  private readonly lastSeen = new Map<string, { url: string; at: number }>();

  constructor(
    private readonly host: string,
    private readonly port: number,
    private readonly forgetAfterMs = 10 * 60_000,
    private readonly resolver: Resolver = systemResolver,
  ) {}

  /** A pod's name from its PTR record (kumod-0.kumod-headless.<ns>.svc...), else its address. */
  private async name(ip: string): Promise<string> {
    const known = this.names.get(ip);
    if (known) return known;
    const ptr = await this.resolver.names(ip).catch(() => [] as string[]);
    const name = ptr[0]?.split(".")[0] || ip;
    this.names.set(ip, name);
    return name;
  }

  async targets(now: number): Promise<{ live: Target[]; gone: Target[]; error?: string }> {
    let addresses: string[] = [];
    let error: string | undefined;
    try {
      addresses = await this.resolver.addresses(this.host);
    } catch (err) {
      error = `cannot resolve ${this.host}: ${reason(err)}`;
    }
    const live = await Promise.all(
      addresses.map(async (ip) => ({ id: await this.name(ip), url: `http://${ip}:${this.port}/` })),
    );
    // An address can pass to another pod: names are kept only while their address is listed.
    for (const ip of [...this.names.keys()]) if (!addresses.includes(ip)) this.names.delete(ip);
    for (const t of live) this.lastSeen.set(t.id, { url: t.url, at: now });
    const liveIds = new Set(live.map((t) => t.id));
    const gone: Target[] = [];
    for (const [id, seen] of this.lastSeen) {
      if (liveIds.has(id)) continue;
      if (now - seen.at > this.forgetAfterMs) this.lastSeen.delete(id);
      else gone.push({ id, url: seen.url });
    }
    return { live, gone, ...(error ? { error } : {}) };
  }
}

export async function readPods(
  targets: KumodTargets,
  discovery: DnsDiscovery | undefined,
  now: number,
  timeoutMs: number,
): Promise<{ pods: PodReading[]; discoveryError?: string }> {
  let live: Target[];
  let gone: Target[] = [];
  let discoveryError: string | undefined;
  if (targets.kind === "urls") {
    live = targets.urls.map((url) => ({ id: new URL(url).host, url }));
  } else {
    const found = await (discovery as DnsDiscovery).targets(now);
    live = found.live;
    gone = found.gone;
    discoveryError = found.error;
  }
  const pods = await Promise.all(
    live.map(async (t): Promise<PodReading> => {
      try {
        const text = await getText(new URL("/metrics", t.url).href, timeoutMs);
        return { ...t, samples: parsePrometheus(text) };
      } catch (err) {
        return { ...t, error: reason(err) };
      }
    }),
  );
  for (const t of gone) pods.push({ ...t, error: "gone from the headless Service (not ready, or removed)" });
  pods.sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true }));
  return discoveryError ? { pods, discoveryError } : { pods };
}

export interface TsaReading {
  suspensions?: unknown;
  shaping?: string;
  error?: string;
}

export async function readTsa(base: string, timeoutMs: number): Promise<TsaReading> {
  try {
    const [suspended, shaping] = await Promise.all([
      getText(new URL("/get_suspension_v1/suspended.json", base).href, timeoutMs),
      getText(new URL("/get_config_v1/shaping.toml", base).href, timeoutMs),
    ]);
    return { suspensions: JSON.parse(suspended), shaping };
  } catch (err) {
    return { error: reason(err) };
  }
}

export interface SinkReading {
  stats?: SinkStats;
  available?: string[];
  error?: string;
}

export async function readSink(base: string, timeoutMs: number): Promise<SinkReading> {
  let timer: NodeJS.Timeout | undefined;
  // The sink client allows 5 s; one slow source must not hold up the whole page for that long.
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the sink at ${base} gave no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const [stats, scenario] = await Promise.race([Promise.all([getSinkStats(base), getScenario(base)]), late]);
    return { stats, available: scenario.available };
  } catch (err) {
    return { error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}
