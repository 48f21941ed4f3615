/**
 * Counters per client IP, the TCP peer of a connection. With KumoProxy in front of kumod every proxy pod plays one
 * public sending IP, so these are the counts a mailbox provider would keep per sending IP.
 */
import { isIPv4 } from "node:net";

/** The label and key of every client IP past the cardinality limit. */
export const OTHER_CLIENTS = "_other";

/**
 * The client IP of a peer address: an IPv4-mapped IPv6 address (how a dual-stack listener sees an IPv4 peer) as
 * plain IPv4, so one sending IP has one name whatever the sink listens on.
 */
export function clientIp(remoteAddress: string | undefined): string {
  if (remoteAddress === undefined) return "unknown";
  const lower = remoteAddress.toLowerCase();
  return lower.startsWith("::ffff:") && isIPv4(lower.slice(7)) ? lower.slice(7) : lower;
}

export interface Outcomes {
  accepted: number;
  deferred: number;
  bounced: number;
}

/** What one client IP did on one site; counted like the sink's totals (docs/sink.md, "Accounting"). */
export interface ClientSiteCounts {
  connections: number;
  messages: Outcomes;
  recipients: Outcomes;
}

const OUTCOMES = ["accepted", "deferred", "bounced"] as const;

function newCounts(): ClientSiteCounts {
  return {
    connections: 0,
    messages: { accepted: 0, deferred: 0, bounced: 0 },
    recipients: { accepted: 0, deferred: 0, bounced: 0 },
  };
}

function add(into: ClientSiteCounts, c: ClientSiteCounts): void {
  into.connections += c.connections;
  for (const o of OUTCOMES) {
    into.messages[o] += c.messages[o];
    into.recipients[o] += c.recipients[o];
  }
}

function copy(c: ClientSiteCounts): ClientSiteCounts {
  return { connections: c.connections, messages: { ...c.messages }, recipients: { ...c.recipients } };
}

/** A Prometheus sample: the label set (with braces) and the value. */
export type Sample = [string, number];

export class ClientStats {
  /** client IP -> site -> counts; sites in the order the client first connected to them. */
  private readonly byIp = new Map<string, Map<string, ClientSiteCounts>>();
  private readonly other = new Map<string, ClientSiteCounts>();

  constructor(private readonly maxClients: number) {}

  /**
   * The counters of one client IP on one site, for a session to keep and increment. Past `maxClients` distinct IPs,
   * new ones share OTHER_CLIENTS: a metric label per IP must not grow without bound.
   */
  counts(ip: string, site: string): ClientSiteCounts {
    let sites = this.byIp.get(ip);
    if (sites === undefined) {
      if (this.byIp.size >= this.maxClients) sites = this.other;
      else {
        sites = new Map();
        this.byIp.set(ip, sites);
      }
    }
    let c = sites.get(site);
    if (c === undefined) {
      c = newCounts();
      sites.set(site, c);
    }
    return c;
  }

  private entries(): [string, Map<string, ClientSiteCounts>][] {
    const out = [...this.byIp];
    if (this.other.size > 0) out.push([OTHER_CLIENTS, this.other]);
    return out;
  }

  /** Per client IP: totals over its sites, and `sites` with what it did on each. */
  toJSON(): Record<string, object> {
    const out: Record<string, object> = {};
    for (const [ip, sites] of this.entries()) {
      const total = newCounts();
      const bySite: Record<string, ClientSiteCounts> = {};
      for (const [site, c] of sites) {
        add(total, c);
        bySite[site] = copy(c);
      }
      out[ip] = { ...total, sites: bySite };
    }
    return out;
  }

  /** Samples of sink_client_connections_total. */
  connectionSamples(label: (v: string) => string): Sample[] {
    const out: Sample[] = [];
    for (const [ip, sites] of this.entries()) {
      for (const [site, c] of sites) out.push([`{client_ip="${label(ip)}",site="${label(site)}"}`, c.connections]);
    }
    return out;
  }

  /** Samples of sink_client_messages_total or sink_client_recipients_total, by outcome. */
  outcomeSamples(of: "messages" | "recipients", label: (v: string) => string): Sample[] {
    const out: Sample[] = [];
    for (const [ip, sites] of this.entries()) {
      for (const [site, c] of sites) {
        for (const o of OUTCOMES) {
          out.push([`{client_ip="${label(ip)}",site="${label(site)}",outcome="${o}"}`, c[of][o]]);
        }
      }
    }
    return out;
  }
}
