/**
 * The rules engine: a validated scenario compiled into per-stage rule lists that the SMTP session evaluates
 * synchronously on its hot path. No allocation per evaluation; results go into a caller-owned Decision.
 */
import { ClientMatcher } from "./clients.ts";
import type { DelaySpec, RuleDef, ScenarioDef, Stage } from "./config.ts";
import type { Random } from "./random.ts";

export const STAGE_CONNECT = 0;
export const STAGE_MAIL = 1;
export const STAGE_RCPT = 2;
export const STAGE_DATA = 3;
const STAGE_INDEX: Record<Stage, number> = { connect: 0, mail: 1, rcpt: 2, data: 3 };

export interface Decision {
  delayMs: number;
  /** The reply line without CRLF, or null to keep the default reply. */
  reply: string | null;
  code: number;
  disconnect: boolean;
}

export function newDecision(): Decision {
  return { delayMs: 0, reply: null, code: 0, disconnect: false };
}

/**
 * Per-connection state the engine needs: the client IP (for `clients` and `{ip}`), the provider site the connection
 * was made to, and what the engine keeps for the scenario it was bound to (another active scenario rebinds it).
 */
export interface PeerState {
  ip: string;
  site: string;
  boundTo: CompiledScenario | null;
  siteRules: SiteRules | null;
  throttleCounts: Int32Array | null;
}

/** The rules of a scenario that apply on one site, per stage, with their per-domain lookup cache. */
export interface SiteRules {
  readonly byStage: CompiledRule[][];
  /** Per stage, the rules that apply to one domain: a message to one domain checks one map, not every rule. */
  readonly byDomain: Map<string, CompiledRule[]>[];
}

class ReplyTemplate {
  readonly code: number;
  private readonly parts: string[];
  private readonly fixed: string | null;

  constructor(text: string) {
    this.code = Number(text.slice(0, 3));
    this.parts = text.split(/(\{ip\}|\{domain\})/);
    this.fixed = this.parts.length === 1 ? text : null;
  }

  render(ip: string, domain: string): string {
    if (this.fixed !== null) return this.fixed;
    let s = "";
    for (const p of this.parts) s += p === "{ip}" ? ip : p === "{domain}" ? domain || "unknown" : p;
    return s;
  }
}

type Sampler = (random: Random) => number;

function compileDelay(spec: DelaySpec): Sampler {
  if ("ms" in spec) return () => spec.ms;
  if ("min_ms" in spec) return (r) => spec.min_ms + r.next() * (spec.max_ms - spec.min_ms);
  // Log-normal from the median and the 99th percentile: sigma = ln(p99 / median) / z(0.99).
  const mu = Math.log(spec.median_ms);
  const sigma = Math.log(spec.p99_ms / spec.median_ms) / 2.3263;
  return (r) => {
    const u = 1 - r.next();
    const z = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r.next());
    return Math.min(600_000, Math.exp(mu + sigma * z));
  };
}

const PER_SECOND = 1;
const PER_MINUTE = 2;
const PER_CONNECTION = 3;

class CompiledRule {
  readonly name: string;
  /** The sites this rule applies on; null for every site. */
  private readonly sites: Set<string> | null;
  /** The client IPs this rule applies to; null for every client. */
  readonly clients: ClientMatcher | null;
  private readonly anyDomain: boolean;
  private readonly exact: Set<string>;
  private readonly suffixes: string[];
  private readonly probability: number;
  private readonly throttleMax: number;
  private readonly throttlePer: number;
  private windowStart = 0;
  private windowCount = 0;
  readonly connectionSlot: number;
  private readonly delay: Sampler | null;
  private readonly replies: ReplyTemplate[];
  private readonly disconnect: boolean;

  constructor(def: RuleDef, catalogues: Record<string, string[]>, connectionSlot: number) {
    this.name = def.name;
    this.sites = def.sites ? new Set(def.sites) : null;
    this.clients = def.clients ? new ClientMatcher(def.clients) : null;
    const domains = def.domains ?? ["*"];
    this.anyDomain = domains.includes("*");
    this.exact = new Set(domains.filter((d) => !d.startsWith("*")));
    this.suffixes = domains.filter((d) => d.startsWith("*.")).map((d) => d.slice(1));
    this.probability = def.probability ?? 1;
    this.throttleMax = def.throttle?.max ?? 0;
    this.throttlePer = def.throttle
      ? def.throttle.per === "second"
        ? PER_SECOND
        : def.throttle.per === "minute"
          ? PER_MINUTE
          : PER_CONNECTION
      : 0;
    this.connectionSlot = connectionSlot;
    this.delay = def.delay ? compileDelay(def.delay) : null;
    const texts = def.reply ?? (def.catalogue ? (catalogues[def.catalogue] ?? []) : []);
    this.replies = texts.map((t) => new ReplyTemplate(t));
    this.disconnect = def.action === "disconnect";
  }

  appliesOn(site: string): boolean {
    return this.sites === null || this.sites.has(site);
  }

  /** Index of the first domain in [from, to) this rule applies to, or -1; `from === to` means no domains known. */
  matchDomain(domains: readonly string[], from: number, to: number): number {
    if (this.anyDomain) return from;
    for (let i = from; i < to; i++) {
      const d = domains[i] as string;
      if (this.exact.has(d)) return i;
      for (const s of this.suffixes) if (d.endsWith(s)) return i;
    }
    return -1;
  }

  /** Counts one event against the throttle; true when it is over the limit. */
  private overThrottle(peer: PeerState): boolean {
    if (this.throttlePer === PER_CONNECTION) {
      const counts = peer.throttleCounts as Int32Array;
      const n = (counts[this.connectionSlot] as number) + 1;
      counts[this.connectionSlot] = n;
      return n > this.throttleMax;
    }
    const now = Date.now();
    const width = this.throttlePer === PER_SECOND ? 1000 : 60_000;
    if (now - this.windowStart >= width) {
      this.windowStart = now - (now % width);
      this.windowCount = 0;
    }
    return ++this.windowCount > this.throttleMax;
  }

  /** Applies the rule; returns true when it fired. Sets an outcome in `out` only if it has one. */
  apply(peer: PeerState, domain: string, random: Random, out: Decision): boolean {
    // Before the throttle: other clients' events must not count against it.
    if (this.clients !== null && !this.clients.matches(peer.ip)) return false;
    if (this.throttlePer !== 0 && !this.overThrottle(peer)) return false;
    if (this.probability < 1 && random.next() >= this.probability) return false;
    if (this.delay !== null) out.delayMs += this.delay(random);
    if (this.disconnect) out.disconnect = true;
    else if (this.replies.length > 0) {
      const n = this.replies.length;
      const t = this.replies[n === 1 ? 0 : Math.floor(random.next() * n)] as ReplyTemplate;
      out.reply = t.render(peer.ip, domain);
      out.code = t.code;
    }
    return true;
  }

  get decisive(): boolean {
    return this.disconnect || this.replies.length > 0;
  }
}

export const DIRECTIVES_OFF = 0;
export const DIRECTIVES_RCPT = 1;
export const DIRECTIVES_DATA = 2;

export class CompiledScenario {
  readonly def: ScenarioDef;
  readonly directives: number;
  private readonly byStage: CompiledRule[][];
  private readonly connectionSlots: number;
  /** Per site, built at the first connection of that site (sites come from SINK_SITE_PORTS: a handful). */
  private readonly bySite = new Map<string, SiteRules>();

  constructor(
    def: ScenarioDef,
    catalogues: Record<string, string[]>,
    private readonly random: Random,
    private readonly onFault: (rule: string) => void,
  ) {
    this.def = def;
    this.directives = def.directives === "rcpt" ? DIRECTIVES_RCPT : def.directives === "data" ? DIRECTIVES_DATA : 0;
    this.byStage = [[], [], [], []];
    let slots = 0;
    for (const r of def.rules) {
      const slot = r.throttle?.per === "connection" ? slots++ : -1;
      this.byStage[STAGE_INDEX[r.stage]]?.push(new CompiledRule(r, catalogues, slot));
    }
    this.connectionSlots = slots;
  }

  /** The rules of this scenario for the peer's site, binding the peer to this scenario on first use. */
  private bind(peer: PeerState): SiteRules {
    if (peer.boundTo !== this) {
      peer.boundTo = this;
      peer.siteRules = this.rulesOfSite(peer.site);
      peer.throttleCounts = this.connectionSlots > 0 ? new Int32Array(this.connectionSlots) : null;
    }
    return peer.siteRules as SiteRules;
  }

  private rulesOfSite(site: string): SiteRules {
    let rules = this.bySite.get(site);
    if (rules === undefined) {
      rules = {
        byStage: this.byStage.map((list) => list.filter((r) => r.appliesOn(site))),
        byDomain: [new Map(), new Map(), new Map(), new Map()],
      };
      this.bySite.set(site, rules);
    }
    return rules;
  }

  /** Per rule with `clients: one`, the client IP it chose, or null while no client has reached it. */
  chosenClients(): Record<string, string | null> {
    const out: Record<string, string | null> = {};
    for (const list of this.byStage) {
      for (const r of list) if (r.clients?.choosesOne) out[r.name] = r.clients.chosen;
    }
    return out;
  }

  hasRules(stage: number, peer: PeerState): boolean {
    return (this.bind(peer).byStage[stage] as CompiledRule[]).length > 0;
  }

  /**
   * Evaluates the rules of one stage in order. Rules with only a delay add it and evaluation goes on; the first
   * rule that fires with a reply or a disconnect decides. Domains are domains[from..to) (one recipient at RCPT,
   * the transaction's recipients at end of DATA, none at connect and MAIL).
   */
  evaluate(stage: number, peer: PeerState, domains: readonly string[], from: number, to: number, out: Decision): void {
    out.delayMs = 0;
    out.reply = null;
    out.code = 0;
    out.disconnect = false;
    const site = this.bind(peer);
    const rules = site.byStage[stage] as CompiledRule[];
    if (rules.length === 0) return;
    if (to - from === 1) {
      const domain = domains[from] as string;
      for (const rule of rulesFor(site.byDomain[stage] as Map<string, CompiledRule[]>, rules, domain)) {
        if (!rule.apply(peer, domain, this.random, out)) continue;
        this.onFault(rule.name);
        if (rule.decisive) return;
      }
      return;
    }
    for (const rule of rules) {
      const at = stage === STAGE_RCPT || stage === STAGE_DATA ? rule.matchDomain(domains, from, to) : from;
      if (at < 0) continue;
      if (!rule.apply(peer, at < to ? (domains[at] as string) : "", this.random, out)) continue;
      this.onFault(rule.name);
      if (rule.decisive) return;
    }
  }
}

function rulesFor(cache: Map<string, CompiledRule[]>, rules: CompiledRule[], domain: string): CompiledRule[] {
  let list = cache.get(domain);
  if (list === undefined) {
    list = rules.filter((r) => r.matchDomain([domain], 0, 1) >= 0);
    // Bounded: past this many distinct domains, new ones are matched rule by rule each time (same result).
    if (cache.size < 10_000) cache.set(domain, list);
  }
  return list;
}

/**
 * KumoMTA smart-sink address directives on a local part: "NNN-..." answers NNN (2xx = always accept), otherwise
 * "tempfail" anywhere gives a 4xx and "permfail" a 5xx. Returns the reply line, "" for always-accept, or null.
 */
export function addressDirective(local: string): string | null {
  if (local.length >= 4 && local.charCodeAt(3) === 45) {
    const code = local.slice(0, 3);
    if (/^[245]\d\d$/.test(code)) {
      return code[0] === "2" ? "" : `${code} ${code[0]}.0.0 Reply ${code} requested by address directive`;
    }
  }
  const lower = local.toLowerCase();
  if (lower.includes("tempfail")) return "451 4.3.0 Temporary failure requested by address directive (tempfail)";
  if (lower.includes("permfail")) return "550 5.1.1 Permanent failure requested by address directive (permfail)";
  return null;
}
