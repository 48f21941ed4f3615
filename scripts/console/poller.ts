/** Reads every source once per interval (never two rounds at once) and keeps the page's state and history. */

import { parseShapingOverrides, type ShapingOverride } from "../lib/tsa-config.ts";
import { DnsDiscovery, type KumodTargets, readPods, readSink, readTsa } from "./collect.ts";
import {
  type ConsoleState,
  domainViews,
  FlowHistory,
  FlowTracker,
  kumodTotals,
  podViews,
  providerViews,
  SinkRecent,
  SiteRates,
  siteViews,
  suspensionViews,
} from "./model.ts";

export interface PollerOptions {
  kumod: KumodTargets;
  tsaUrl: string;
  sinkUrl: string;
  intervalMs: number;
  /** Ten minutes of history at one reading per second. */
  historyPoints?: number;
  /** The window of the per-domain "recent replies" columns. */
  recentMs?: number;
}

export class Poller {
  private readonly flow = new FlowTracker();
  private readonly siteRates = new SiteRates();
  private readonly history: FlowHistory;
  private readonly recent: SinkRecent;
  private readonly discovery?: DnsDiscovery;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  state?: ConsoleState;

  constructor(readonly opts: PollerOptions) {
    this.history = new FlowHistory(opts.historyPoints ?? 600);
    this.recent = new SinkRecent(opts.recentMs ?? 10_000);
    if (opts.kumod.kind === "dns") this.discovery = new DnsDiscovery(opts.kumod.host, opts.kumod.port);
  }

  async poll(): Promise<ConsoleState> {
    const at = Date.now();
    const timeoutMs = Math.max(500, Math.min(this.opts.intervalMs * 1.5, 3000));
    const [kumod, tsa, sink] = await Promise.all([
      readPods(this.opts.kumod, this.discovery, at, timeoutMs),
      readTsa(this.opts.tsaUrl, timeoutMs),
      readSink(this.opts.sinkUrl, timeoutMs),
    ]);
    const pods = podViews(kumod.pods);
    const totals = kumodTotals(pods);
    this.history.push({
      t: at / 1000,
      ...this.flow.step(at, pods),
      scheduled: totals?.scheduled ?? null,
      ready: totals?.ready ?? null,
    });
    let tsaError = tsa.error;
    let overrides: ShapingOverride[] = [];
    try {
      if (tsa.shaping !== undefined) overrides = parseShapingOverrides(tsa.shaping);
    } catch (err) {
      tsaError = `shaping.toml from tsa-daemon does not parse: ${(err as Error).message}`;
    }
    const sites = siteViews(kumod.pods);
    this.siteRates.step(at, kumod.pods, sites);
    const state: ConsoleState = {
      at: new Date(at).toISOString(),
      intervalMs: this.opts.intervalMs,
      kumod: {
        pods,
        reachable: pods.filter((p) => p.queues).length,
        ...(totals ? { totals } : {}),
        ...(kumod.discoveryError ? { discoveryError: kumod.discoveryError } : {}),
      },
      domains: domainViews(kumod.pods, sink.stats, this.recent.step(at, sink.stats)),
      sites,
      providers: providerViews(kumod.pods),
      tsa: {
        url: this.opts.tsaUrl,
        ...(tsaError ? { error: tsaError } : {}),
        suspensions: tsa.suspensions === undefined ? [] : suspensionViews(tsa.suspensions),
        overrides,
      },
      sink: { url: this.opts.sinkUrl, ...sink },
      history: this.history.columns(),
    };
    this.state = state;
    return state;
  }

  /** Polls now, then `intervalMs` after each round started (or right after a round that took longer). */
  start(): void {
    const loop = async () => {
      const started = Date.now();
      await this.poll();
      if (this.stopped) return;
      this.timer = setTimeout(loop, Math.max(0, this.opts.intervalMs - (Date.now() - started)));
    };
    void loop();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
