/**
 * Validation of the rules file (sink.yaml) and of scenarios sent over HTTP. Pure: text or objects in, a
 * normalized definition out, or a ConfigError listing every problem with its path.
 */
import { parse as parseYaml } from "yaml";
import { SITE_NAME } from "../sites.ts";
import { type ClientsDef, validateClients } from "./clients.ts";

export type Stage = "connect" | "mail" | "rcpt" | "data";
export const STAGES: readonly Stage[] = ["connect", "mail", "rcpt", "data"];

export type DelaySpec = { ms: number } | { min_ms: number; max_ms: number } | { median_ms: number; p99_ms: number };

export interface RuleDef {
  name: string;
  stage: Stage;
  /** Provider sites (the port kumod connected to, SINK_SITE_PORTS; "other" for SINK_SMTP_PORT). */
  sites?: string[];
  /** Client IPs (TCP peers): addresses and CIDR ranges, or "one" (the first client IP that reaches the rule). */
  clients?: ClientsDef;
  domains?: string[];
  probability?: number;
  throttle?: { max: number; per: "second" | "minute" | "connection" };
  delay?: DelaySpec;
  reply?: string[];
  catalogue?: string;
  action?: "disconnect";
}

export interface ScenarioDef {
  name: string;
  description?: string;
  /** KumoMTA smart-sink address directives (tempfail, permfail, NNN-): off, or the stage where they answer. */
  directives: "off" | "rcpt" | "data";
  rules: RuleDef[];
}

export interface SinkConfig {
  defaultScenario: string;
  catalogues: Record<string, string[]>;
  scenarios: Record<string, ScenarioDef>;
}

export class ConfigError extends Error {
  constructor(
    message: string,
    readonly details: string[],
  ) {
    super(`${message}:\n  ${details.join("\n  ")}`);
  }
}

const NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;
const REPLY = /^([2-5])\d\d( [^\r\n]*)?$/;
const DOMAIN = /^(\*|\*\.[^\s@*]+|[^\s@*]+)$/;
const RULE_KEYS = new Set([
  "name",
  "stage",
  "sites",
  "clients",
  "domains",
  "probability",
  "throttle",
  "delay",
  "reply",
  "catalogue",
  "action",
]);
const SCENARIO_KEYS = new Set(["name", "description", "directives", "rules"]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isNumber(v: unknown, min: number, max = Number.POSITIVE_INFINITY): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= min && v <= max;
}

function validateReply(text: unknown, path: string, errors: string[]): string | undefined {
  if (typeof text !== "string" || !REPLY.test(text)) {
    errors.push(`${path}: must be a one-line SMTP reply such as "451 4.7.1 Try again later" (code 200-599)`);
    return undefined;
  }
  return text;
}

function validateDelay(v: unknown, path: string, errors: string[]): DelaySpec | undefined {
  const max = 600_000;
  if (isNumber(v, 0, max)) return { ms: v };
  if (isObject(v)) {
    const keys = Object.keys(v).sort().join(",");
    if (keys === "ms" && isNumber(v.ms, 0, max)) return { ms: v.ms };
    if (keys === "max_ms,min_ms" && isNumber(v.min_ms, 0, max) && isNumber(v.max_ms, v.min_ms as number, max)) {
      return { min_ms: v.min_ms, max_ms: v.max_ms };
    }
    if (
      keys === "median_ms,p99_ms" &&
      isNumber(v.median_ms, 1, max) &&
      isNumber(v.p99_ms, v.median_ms as number, max)
    ) {
      return { median_ms: v.median_ms, p99_ms: v.p99_ms };
    }
  }
  errors.push(
    `${path}: must be milliseconds (0-600000), {ms}, {min_ms, max_ms} (uniform, min <= max) or {median_ms, p99_ms} (log-normal, median <= p99)`,
  );
  return undefined;
}

function validateRule(
  raw: unknown,
  path: string,
  catalogues: Record<string, string[]>,
  errors: string[],
): RuleDef | undefined {
  if (!isObject(raw)) {
    errors.push(`${path}: must be a mapping`);
    return undefined;
  }
  const before = errors.length;
  for (const key of Object.keys(raw)) if (!RULE_KEYS.has(key)) errors.push(`${path}.${key}: unknown key`);
  const name = raw.name;
  if (typeof name !== "string" || !NAME.test(name)) {
    errors.push(`${path}.name: required, lower-case letters, digits, '.', '_' or '-' (max 64)`);
  }
  const stage = raw.stage ?? "rcpt";
  if (typeof stage !== "string" || !STAGES.includes(stage as Stage)) {
    errors.push(`${path}.stage: must be one of ${STAGES.join(", ")}`);
  }
  const rule: RuleDef = { name: String(name), stage: stage as Stage };
  if (raw.sites !== undefined) {
    if (!Array.isArray(raw.sites) || raw.sites.length === 0) {
      errors.push(`${path}.sites: must be a non-empty list of site names (google, yahoo, outlook, other...)`);
    } else {
      raw.sites.forEach((s, i) => {
        if (typeof s !== "string" || !SITE_NAME.test(s)) {
          errors.push(`${path}.sites[${i}]: not a site name (a lower-case label such as google or other)`);
        }
      });
      rule.sites = raw.sites.map(String);
    }
  }
  if (raw.clients !== undefined) rule.clients = validateClients(raw.clients, `${path}.clients`, errors);
  if (raw.domains !== undefined) {
    if (stage === "connect" || stage === "mail") {
      errors.push(`${path}.domains: recipient domains are unknown at stage ${String(stage)}; use rcpt or data`);
    } else if (!Array.isArray(raw.domains) || raw.domains.length === 0) {
      errors.push(`${path}.domains: must be a non-empty list of domains ("example.com", "*.example.com" or "*")`);
    } else {
      raw.domains.forEach((d, i) => {
        if (typeof d !== "string" || !DOMAIN.test(d)) errors.push(`${path}.domains[${i}]: not a domain pattern`);
      });
      rule.domains = (raw.domains as string[]).map((d) => String(d).toLowerCase());
    }
  }
  if (raw.probability !== undefined) {
    if (isNumber(raw.probability, 0, 1)) rule.probability = raw.probability;
    else errors.push(`${path}.probability: must be a number from 0 to 1`);
  }
  if (raw.throttle !== undefined) {
    const t = raw.throttle;
    if (
      isObject(t) &&
      Number.isInteger(t.max) &&
      isNumber(t.max, 0) &&
      (t.per === "second" || t.per === "minute" || t.per === "connection") &&
      Object.keys(t).length === 2
    ) {
      rule.throttle = { max: t.max, per: t.per };
    } else {
      errors.push(`${path}.throttle: must be {max: <integer >= 0>, per: second|minute|connection}`);
    }
  }
  if (raw.delay !== undefined) rule.delay = validateDelay(raw.delay, `${path}.delay`, errors);
  if (raw.reply !== undefined) {
    const list = Array.isArray(raw.reply) ? raw.reply : [raw.reply];
    if (list.length === 0) errors.push(`${path}.reply: must not be empty`);
    rule.reply = list.map(
      (r, i) => validateReply(r, Array.isArray(raw.reply) ? `${path}.reply[${i}]` : `${path}.reply`, errors) ?? "",
    );
  }
  if (raw.catalogue !== undefined) {
    if (typeof raw.catalogue !== "string" || !(raw.catalogue in catalogues)) {
      const known = Object.keys(catalogues).join(", ") || "none defined";
      errors.push(`${path}.catalogue: unknown catalogue ${JSON.stringify(raw.catalogue)} (known: ${known})`);
    } else rule.catalogue = raw.catalogue;
  }
  if (raw.action !== undefined) {
    if (raw.action === "disconnect") rule.action = "disconnect";
    else errors.push(`${path}.action: the only action is "disconnect"`);
  }
  const outcomes = [raw.reply, raw.catalogue, raw.action].filter((x) => x !== undefined).length;
  if (outcomes > 1) errors.push(`${path}: reply, catalogue and action are mutually exclusive`);
  if (outcomes === 0 && raw.delay === undefined) {
    errors.push(`${path}: needs an effect: reply, catalogue, action: disconnect, or delay`);
  }
  if (stage === "connect") {
    const replies = rule.reply ?? (rule.catalogue ? catalogues[rule.catalogue] : []) ?? [];
    if (replies.some((r) => r[0] === "2")) errors.push(`${path}: a connect-stage reply must be 4xx or 5xx (a refusal)`);
  }
  return errors.length === before ? rule : undefined;
}

/** Validates one scenario; `name` comes from the map key in the file or from the body of PUT /api/scenario. */
export function validateScenario(
  name: unknown,
  raw: unknown,
  catalogues: Record<string, string[]>,
  path: string,
  errors: string[],
): ScenarioDef | undefined {
  const before = errors.length;
  if (typeof name !== "string" || !NAME.test(name)) {
    errors.push(`${path}: scenario name must be lower-case letters, digits, '.', '_' or '-' (max 64)`);
  }
  const body = raw ?? {};
  if (!isObject(body)) {
    errors.push(`${path}: must be a mapping`);
    return undefined;
  }
  for (const key of Object.keys(body)) if (!SCENARIO_KEYS.has(key)) errors.push(`${path}.${key}: unknown key`);
  const directives = body.directives ?? "off";
  if (directives !== "off" && directives !== "rcpt" && directives !== "data") {
    errors.push(`${path}.directives: must be off, rcpt or data`);
  }
  if (body.description !== undefined && typeof body.description !== "string") {
    errors.push(`${path}.description: must be a string`);
  }
  const rules: RuleDef[] = [];
  if (body.rules !== undefined && body.rules !== null && !Array.isArray(body.rules)) {
    errors.push(`${path}.rules: must be a list`);
  } else if (Array.isArray(body.rules)) {
    const seen = new Set<string>();
    body.rules.forEach((r, i) => {
      const rule = validateRule(r, `${path}.rules[${i}]`, catalogues, errors);
      if (!rule) return;
      if (seen.has(rule.name)) errors.push(`${path}.rules[${i}].name: duplicate rule name ${rule.name}`);
      seen.add(rule.name);
      rules.push(rule);
    });
  }
  if (errors.length !== before) return undefined;
  const def: ScenarioDef = { name: name as string, directives: directives as ScenarioDef["directives"], rules };
  if (typeof body.description === "string") def.description = body.description;
  return def;
}

/** Parses and validates the whole rules file. */
export function parseConfig(text: string): SinkConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ConfigError("rules file is not valid YAML", [(err as Error).message]);
  }
  const errors: string[] = [];
  if (!isObject(doc)) throw new ConfigError("invalid rules file", ["top level must be a mapping"]);
  for (const key of Object.keys(doc)) {
    if (!["default_scenario", "catalogues", "scenarios"].includes(key)) errors.push(`${key}: unknown key`);
  }
  const catalogues: Record<string, string[]> = {};
  if (doc.catalogues !== undefined) {
    if (!isObject(doc.catalogues)) errors.push("catalogues: must be a mapping of name to a list of replies");
    else {
      for (const [name, list] of Object.entries(doc.catalogues)) {
        if (!NAME.test(name)) errors.push(`catalogues.${name}: invalid name`);
        if (!Array.isArray(list) || list.length === 0) {
          errors.push(`catalogues.${name}: must be a non-empty list of replies`);
          continue;
        }
        catalogues[name] = list.map((r, i) => validateReply(r, `catalogues.${name}[${i}]`, errors) ?? "");
      }
    }
  }
  const scenarios: Record<string, ScenarioDef> = {};
  if (!isObject(doc.scenarios) || Object.keys(doc.scenarios).length === 0) {
    errors.push("scenarios: required, a mapping of scenario name to scenario");
  } else {
    for (const [name, raw] of Object.entries(doc.scenarios)) {
      const def = validateScenario(name, raw, catalogues, `scenarios.${name}`, errors);
      if (def) scenarios[name] = def;
    }
  }
  const names = Object.keys(isObject(doc.scenarios) ? doc.scenarios : {});
  const defaultScenario = doc.default_scenario ?? names[0];
  if (typeof defaultScenario !== "string" || !names.includes(defaultScenario)) {
    errors.push(`default_scenario: must name one of the scenarios (${names.join(", ")})`);
  }
  if (errors.length > 0) throw new ConfigError("invalid rules file", errors);
  return { defaultScenario: defaultScenario as string, catalogues, scenarios };
}
