/**
 * Pure: kumod's ready queues summed over every kumod pod into one row per (egress source, site), with the TSA
 * suspensions that hold each pair. A ready queue is named `<source>-><site>@<protocol>` (KumoMTA
 * crates/kumod/src/ready_queue.rs); its metrics carry `service="smtp_client:<ready queue>"`, and TSA's suspensions
 * carry the ready queue name itself as `site_name`.
 */
import { mailSamples, type SiteView, siteViews } from "../console/model.ts";
import { type KumodQueueSummary, kumodQueueSummary, type Sample } from "./prometheus.ts";

/**
 * One kumod pod's queue totals. Mail queues only: kumod also reports a total per protocol (service="smtp_client",
 * the sum of that protocol's queues) and TSA's log-publishing queues (service="lua:...").
 */
export function kumodPodSummary(samples: readonly Sample[]): KumodQueueSummary {
  return kumodQueueSummary(mailSamples(samples));
}

export interface ReadyQueueName {
  source: string;
  site: string;
  protocol: string;
}

/** `proxy-1->(mta5|mta6|mta7).am0.yahoodns.net@smtp_client` → its parts; undefined for a name of another shape. */
export function parseReadyQueueName(name: string): ReadyQueueName | undefined {
  const arrow = name.indexOf("->");
  if (arrow <= 0) return undefined;
  const rest = name.slice(arrow + 2);
  // A site (an MX site or a domain) has no "@"; the protocol part may (a maildir path), so split at the first one.
  const at = rest.indexOf("@");
  if (at <= 0 || at === rest.length - 1) return undefined;
  return { source: name.slice(0, arrow), site: rest.slice(0, at), protocol: rest.slice(at + 1) };
}

export interface TsaSuspension {
  reason: string;
  expires: string;
  /** The tsa pods that hold it: each replica decides on its own from the logs every kumod sends it. */
  tsa: string[];
}

export interface SourceSiteRow {
  source: string;
  site: string;
  /** Summed over the kumod pods that answered; 0 when the queue is idle (kumod prunes idle queues' metrics). */
  ready: number;
  connections: number;
  delivered: number;
  transientFailures: number;
  permanentFailures: number;
  suspensions: TsaSuspension[];
}

const str = (o: Record<string, unknown>, k: string) => (typeof o[k] === "string" ? (o[k] as string) : "");

export interface SuspendedPair {
  source: string;
  site: string;
  suspensions: TsaSuspension[];
}

const pairKey = (source: string, site: string) => `${source}\n${site}`;

/**
 * The ready-queue suspensions of each tsa pod's /get_suspension_v1/suspended.json, by (source, site). TSA names the
 * pair by the ready queue (`site_name`); when that is not a ready queue name, its `source` field and `site_name` as
 * the site are used. One suspension that several tsa pods hold is listed once, with the latest expiry.
 */
export function readyQueueSuspensions(
  byTsaPod: readonly { pod: string; suspensions: readonly unknown[] }[],
): Map<string, SuspendedPair> {
  const pairs = new Map<string, SuspendedPair & { byRule: Map<string, TsaSuspension> }>();
  for (const { pod, suspensions } of byTsaPod) {
    for (const x of suspensions) {
      if (typeof x !== "object" || x === null) continue;
      const o = x as Record<string, unknown>;
      const siteName = str(o, "site_name");
      if (siteName === "") continue; // a scheduled-queue suspension (domain, tenant, campaign): no source or site
      const parsed = parseReadyQueueName(siteName);
      const source = parsed?.source ?? str(o, "source");
      const site = parsed?.site ?? siteName;
      const key = pairKey(source, site);
      let pair = pairs.get(key);
      if (!pair) {
        pair = { source, site, suspensions: [], byRule: new Map() };
        pairs.set(key, pair);
      }
      const reason = str(o, "reason");
      const expires = str(o, "expires");
      const rule = `${str(o, "rule_hash")}\n${reason}`;
      const seen = pair.byRule.get(rule);
      if (!seen) {
        const s = { reason, expires, tsa: [pod] };
        pair.byRule.set(rule, s);
        pair.suspensions.push(s);
      } else {
        if (!seen.tsa.includes(pod)) seen.tsa.push(pod);
        if (expires > seen.expires) seen.expires = expires;
      }
    }
  }
  return new Map([...pairs].map(([k, { source, site, suspensions }]) => [k, { source, site, suspensions }]));
}

/**
 * One row per (source, site) with SMTP ready queues on any kumod pod, plus one per suspended pair whose queues are
 * idle (pruned), sorted by site then source. TSA's log-publishing queues are not mail and are left out.
 */
export function sourceSiteTable(
  kumodPods: readonly { pod: string; samples: readonly Sample[] }[],
  tsaPods: readonly { pod: string; suspensions: readonly unknown[] }[] = [],
): SourceSiteRow[] {
  const views: SiteView[] = siteViews(kumodPods.map((p) => ({ id: p.pod, url: "", samples: [...p.samples] })));
  const suspended = readyQueueSuspensions(tsaPods);
  const rows = new Map<string, SourceSiteRow>();
  for (const v of views) {
    const key = pairKey(v.source, v.site);
    rows.set(key, {
      source: v.source,
      site: v.site,
      ready: v.ready,
      connections: v.connections,
      delivered: v.delivered,
      transientFailures: v.transfail,
      permanentFailures: v.fail,
      suspensions: suspended.get(key)?.suspensions ?? [],
    });
  }
  for (const [key, { source, site, suspensions }] of suspended) {
    if (rows.has(key)) continue;
    const idle = { ready: 0, connections: 0, delivered: 0, transientFailures: 0, permanentFailures: 0 };
    rows.set(key, { source, site, ...idle, suspensions });
  }
  return [...rows.values()].sort((a, b) => a.site.localeCompare(b.site) || a.source.localeCompare(b.source));
}
