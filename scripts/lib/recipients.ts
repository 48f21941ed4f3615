/** Generated recipients: distinct addresses spread over weighted domains, produced one at a time (O(1) memory). */

export interface WeightedDomain {
  domain: string;
  weight: number;
}

const DOMAIN_RE =
  /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const LOCAL_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,48}$/;

/** Parses `a.test,b.test:3,c.test` (weight defaults to 1). Throws an Error with a user-facing message. */
export function parseDomains(spec: string): WeightedDomain[] {
  const parts = spec
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
  if (parts.length === 0)
    throw new Error("--domains needs at least one domain, e.g. --domains example.com,example.net:3");
  const seen = new Set<string>();
  return parts.map((part) => {
    const [domain = "", weightText, ...extra] = part.split(":");
    if (extra.length > 0 || !DOMAIN_RE.test(domain)) {
      throw new Error(`--domains: "${part}" is not DOMAIN or DOMAIN:WEIGHT (e.g. example.net:3)`);
    }
    const weight = weightText === undefined ? 1 : Number(weightText);
    if (!Number.isInteger(weight) || weight < 1 || weight > 1_000_000) {
      throw new Error(`--domains: weight of ${domain} must be a whole number from 1 to 1000000, got "${weightText}"`);
    }
    const key = domain.toLowerCase();
    if (seen.has(key)) throw new Error(`--domains: ${domain} is listed twice; give it one weight`);
    seen.add(key);
    return { domain, weight };
  });
}

export function checkLocalPart(prefix: string): void {
  if (!LOCAL_RE.test(prefix) || prefix.startsWith(".") || prefix.includes("..")) {
    throw new Error(`--local-part: "${prefix}" is not a usable address local part (letters, digits, . _ + -)`);
  }
}

/**
 * Smooth weighted round-robin (as in nginx): deterministic, every window of sum(weights) picks contains each domain
 * exactly `weight` times, and domains are interleaved rather than sent in runs.
 */
export class DomainPicker {
  private readonly current: number[];
  private readonly total: number;
  constructor(private readonly domains: readonly WeightedDomain[]) {
    this.current = domains.map(() => 0);
    this.total = domains.reduce((s, d) => s + d.weight, 0);
  }
  next(): string {
    return (this.domains[this.nextIndex()] as WeightedDomain).domain;
  }
  nextIndex(): number {
    let best = 0;
    for (let i = 0; i < this.domains.length; i++) {
      this.current[i] = (this.current[i] as number) + (this.domains[i] as WeightedDomain).weight;
      if ((this.current[i] as number) > (this.current[best] as number)) best = i;
    }
    this.current[best] = (this.current[best] as number) - this.total;
    return best;
  }
}

/** Address n (0-based) is `<prefix><n>@<domain>`: distinct within a run for any count. */
export class RecipientGenerator {
  private n = 0;
  readonly picker: DomainPicker;
  constructor(
    readonly domains: readonly WeightedDomain[],
    readonly localPrefix: string,
    private readonly limit: number,
  ) {
    this.picker = new DomainPicker(domains);
  }
  get generated(): number {
    return this.n;
  }
  get remaining(): number {
    return this.limit - this.n;
  }
  /** Reserves up to `max` next addresses; returns the first index and how many (the writer renders them). */
  reserve(max: number): { first: number; count: number } {
    const count = Math.min(max, this.limit - this.n);
    const first = this.n;
    this.n += count;
    return { first, count };
  }

  /** Up to `max` next addresses (fewer at the end of the run). */
  take(max: number): string[] {
    const k = Math.min(max, this.limit - this.n);
    const out = new Array<string>(k);
    for (let i = 0; i < k; i++) out[i] = `${this.localPrefix}${this.n++}@${this.picker.next()}`;
    return out;
  }
}
