/** In-memory counters (monotonic for the process lifetime) and their Prometheus and JSON renderings. */
import { ClientStats } from "./clients.ts";

const STAGE_NAMES = ["connect", "mail", "rcpt", "data"] as const;

export interface DomainCounts {
  accepted: number;
  deferred: number;
  bounced: number;
}

/** Recipients by outcome, like DomainCounts, and the connections made to the site's port. */
export interface SiteCounts extends DomainCounts {
  connections: number;
}

export class Stats {
  readonly startedAt = new Date();
  connectionsActive = 0;
  connectionsTotal = 0;
  /** Connections whose STARTTLS handshake completed: shows whether kumod's TLS settings took effect. */
  connectionsTls = 0;
  messagesAccepted = 0;
  messagesDeferred = 0;
  messagesBounced = 0;
  recipientsAccepted = 0;
  recipientsDeferred = 0;
  recipientsBounced = 0;
  bytesAccepted = 0;
  /** replies[stage][code]: indexed arrays, so counting a reply is two array accesses. */
  private readonly replies = STAGE_NAMES.map(() => new Float64Array(600));
  private readonly faults = new Map<string, number>();
  private readonly domains = new Map<string, DomainCounts>();
  private readonly other: DomainCounts = { accepted: 0, deferred: 0, bounced: 0 };
  private readonly sites = new Map<string, SiteCounts>();
  readonly clients: ClientStats;

  constructor(
    private readonly maxDomains: number,
    maxClients: number,
  ) {
    this.clients = new ClientStats(maxClients);
  }

  reply(stage: number, code: number): void {
    const codes = this.replies[stage] as Float64Array;
    codes[code] = (codes[code] as number) + 1;
  }

  fault(rule: string): void {
    this.faults.set(rule, (this.faults.get(rule) ?? 0) + 1);
  }

  /** Counters for a recipient domain; past `maxDomains` distinct domains they all share "_other". */
  domain(domain: string): DomainCounts {
    let d = this.domains.get(domain);
    if (d === undefined) {
      if (this.domains.size >= this.maxDomains) return this.other;
      d = { accepted: 0, deferred: 0, bounced: 0 };
      this.domains.set(domain, d);
    }
    return d;
  }

  /** Counters for a provider site; the listeners ask for theirs at start, so every site shows up from zero. */
  site(name: string): SiteCounts {
    let s = this.sites.get(name);
    if (s === undefined) {
      s = { connections: 0, accepted: 0, deferred: 0, bounced: 0 };
      this.sites.set(name, s);
    }
    return s;
  }

  private domainEntries(): [string, DomainCounts][] {
    const entries = [...this.domains.entries()];
    if (this.other.accepted + this.other.deferred + this.other.bounced > 0) entries.push(["_other", this.other]);
    return entries;
  }

  private replyEntries(): [string, number, number][] {
    const out: [string, number, number][] = [];
    this.replies.forEach((codes, stage) => {
      codes.forEach((n, code) => {
        if (n > 0) out.push([STAGE_NAMES[stage] as string, code, n]);
      });
    });
    return out;
  }

  /** `chosenClients`: per rule of the active scenario with `clients: one`, the client IP it chose (or null). */
  toJSON(scenario: string, chosenClients: Record<string, string | null>): object {
    return {
      scenario,
      chosen_clients: chosenClients,
      started_at: this.startedAt.toISOString(),
      connections: { active: this.connectionsActive, total: this.connectionsTotal, tls: this.connectionsTls },
      messages: { accepted: this.messagesAccepted, deferred: this.messagesDeferred, bounced: this.messagesBounced },
      recipients: {
        accepted: this.recipientsAccepted,
        deferred: this.recipientsDeferred,
        bounced: this.recipientsBounced,
      },
      bytes: { accepted: this.bytesAccepted },
      replies: Object.fromEntries(this.replyEntries().map(([stage, code, n]) => [`${stage}:${code}`, n])),
      faults: Object.fromEntries(this.faults),
      domains: Object.fromEntries(this.domainEntries().map(([name, d]) => [name, { ...d }])),
      sites: Object.fromEntries([...this.sites].map(([name, s]) => [name, { ...s }])),
      clients: this.clients.toJSON(),
    };
  }

  toPrometheus(): string {
    const lines: string[] = [];
    const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
    };
    const label = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
    metric("sink_messages_accepted_total", "counter", "Messages answered 2xx after DATA.", [
      ["", this.messagesAccepted],
    ]);
    metric("sink_recipients_accepted_total", "counter", "Recipients of messages answered 2xx after DATA.", [
      ["", this.recipientsAccepted],
    ]);
    metric("sink_bytes_accepted_total", "counter", "Octets of accepted message data (as sent, dot-stuffed).", [
      ["", this.bytesAccepted],
    ]);
    metric("sink_messages_rejected_total", "counter", "Messages refused at MAIL or after DATA, by reply class.", [
      ['{class="transient"}', this.messagesDeferred],
      ['{class="permanent"}', this.messagesBounced],
    ]);
    metric("sink_recipients_rejected_total", "counter", "Recipients refused at any stage, by reply class.", [
      ['{class="transient"}', this.recipientsDeferred],
      ['{class="permanent"}', this.recipientsBounced],
    ]);
    metric(
      "sink_replies_total",
      "counter",
      "Replies sent at decision points (connect, mail, rcpt, data), by stage and code.",
      this.replyEntries().map(([stage, code, n]) => [`{stage="${stage}",code="${code}"}`, n]),
    );
    metric(
      "sink_faults_injected_total",
      "counter",
      "Times a scenario rule fired, by rule name.",
      [...this.faults].map(([rule, n]) => [`{rule="${label(rule)}"}`, n]),
    );
    metric("sink_connections_active", "gauge", "Open SMTP connections.", [["", this.connectionsActive]]);
    metric("sink_connections_total", "counter", "SMTP connections accepted.", [["", this.connectionsTotal]]);
    metric("sink_connections_tls_total", "counter", "SMTP connections that completed a STARTTLS handshake.", [
      ["", this.connectionsTls],
    ]);
    const domainSamples: [string, number][] = [];
    for (const [name, d] of this.domainEntries()) {
      for (const outcome of ["accepted", "deferred", "bounced"] as const) {
        domainSamples.push([`{domain="${label(name)}",outcome="${outcome}"}`, d[outcome]]);
      }
    }
    metric(
      "sink_domain_recipients_total",
      "counter",
      'Recipients by domain and outcome; domains past the cardinality limit are counted as "_other".',
      domainSamples,
    );
    const sites = [...this.sites];
    metric(
      "sink_site_connections_total",
      "counter",
      "SMTP connections accepted, by the provider site of the port they were made to.",
      sites.map(([name, s]) => [`{site="${label(name)}"}`, s.connections]),
    );
    metric(
      "sink_site_recipients_total",
      "counter",
      "Recipients by the provider site of the connection's port, and outcome.",
      sites.flatMap(([name, s]) =>
        (["accepted", "deferred", "bounced"] as const).map((o): [string, number] => [
          `{site="${label(name)}",outcome="${o}"}`,
          s[o],
        ]),
      ),
    );
    const limit = 'client IPs past SINK_MAX_CLIENTS are counted as "_other"';
    metric(
      "sink_client_connections_total",
      "counter",
      `SMTP connections accepted, by client IP (TCP peer) and site; ${limit}.`,
      this.clients.connectionSamples(label),
    );
    metric(
      "sink_client_messages_total",
      "counter",
      `Messages by client IP, site and outcome (accepted after DATA, refused at MAIL or after DATA); ${limit}.`,
      this.clients.outcomeSamples("messages", label),
    );
    metric(
      "sink_client_recipients_total",
      "counter",
      `Recipients by client IP, site and outcome; ${limit}.`,
      this.clients.outcomeSamples("recipients", label),
    );
    return `${lines.join("\n")}\n`;
  }
}
