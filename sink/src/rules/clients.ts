/**
 * The `clients` key of a rule: which client IPs (TCP peers; with KumoProxy, one proxy pod per sending IP) the rule
 * applies to. Either a list of addresses and CIDR ranges, or "one": the first client IP that reaches the rule.
 */
import { BlockList, isIP } from "node:net";
import { clientIp } from "../clients.ts";

export type ClientsDef = "one" | string[];

const HINT =
  'must be "one" (the first client IP that reaches the rule) or a non-empty list of IP addresses and CIDR ranges, e.g. [10.0.0.5, 10.1.0.0/16, "fd00::/8"]';

/** An address or CIDR range in the form the sink reports peers (IPv4-mapped IPv6 as IPv4), or null if invalid. */
function normalizeEntry(item: unknown): string | null {
  if (typeof item !== "string") return null;
  const parts = item.trim().split("/");
  if (parts.length > 2) return null;
  const [address, prefix] = parts as [string, string | undefined];
  const family = isIP(address);
  if (family === 0) return null;
  if (prefix === undefined) return clientIp(address);
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128)) return null;
  return `${address.toLowerCase()}/${Number(prefix)}`;
}

/** Validates a rule's `clients`; pushes one error per problem, with its path. */
export function validateClients(raw: unknown, path: string, errors: string[]): ClientsDef | undefined {
  if (raw === "one") return "one";
  if (!Array.isArray(raw) || raw.length === 0) {
    errors.push(`${path}: ${HINT}`);
    return undefined;
  }
  const before = errors.length;
  const list = raw.map((item, i) => {
    const entry = normalizeEntry(item);
    if (entry === null) {
      errors.push(
        `${path}[${i}]: ${JSON.stringify(item)} is not an IP address or CIDR range (a.b.c.d, a.b.c.d/0-32, IPv6 or IPv6/0-128)`,
      );
    }
    return entry ?? "";
  });
  return errors.length === before ? list : undefined;
}

const family = (ip: string): "ipv4" | "ipv6" => (ip.includes(":") ? "ipv6" : "ipv4");

/** A compiled `clients`: belongs to one compiled rule, so a scenario activated anew chooses again. */
export class ClientMatcher {
  private readonly list: BlockList | null;
  /** With "one": the client IP chosen, null until a client reaches the rule. */
  chosen: string | null = null;

  constructor(def: ClientsDef) {
    if (def === "one") {
      this.list = null;
      return;
    }
    this.list = new BlockList();
    for (const entry of def) {
      const [address, prefix] = entry.split("/") as [string, string | undefined];
      if (prefix === undefined) this.list.addAddress(address, family(address));
      else this.list.addSubnet(address, Number(prefix), family(address));
    }
  }

  get choosesOne(): boolean {
    return this.list === null;
  }

  /** Whether the rule applies to this client IP; with "one", the first IP asked becomes the chosen one. */
  matches(ip: string): boolean {
    if (this.list !== null) return this.list.check(ip, family(ip));
    if (this.chosen === null) this.chosen = ip;
    return ip === this.chosen;
  }
}
