/** Environment → settings, validated once at start; every problem is reported together. */
import { randomInt } from "node:crypto";
import { isAbsolute, resolve } from "node:path";
import { DEFAULT_SITE, SITE_NAME } from "./sites.ts";

/** A provider site and the extra SMTP port whose connections belong to it. */
export interface SitePort {
  site: string;
  port: number;
}

export interface Settings {
  host: string;
  smtpPort: number;
  httpPort: number;
  /** Extra SMTP ports, one per provider site; connections to smtpPort belong to the site "other". */
  sitePorts: SitePort[];
  hostname: string;
  configPath: string;
  configPollMs: number;
  scenario: string | undefined;
  seed: number;
  maxConnections: number;
  idleTimeoutMs: number;
  maxMessageSize: number;
  maxRecipients: number;
  maxLineLength: number;
  maxErrors: number;
  maxDomains: number;
  /** Distinct client IPs with counters (and metric labels) of their own. */
  maxClients: number;
  drainTimeoutMs: number;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  /** Offer STARTTLS with a certificate generated at start (when no certificate files are given). */
  starttls: boolean;
  logConnections: boolean;
}

export class SettingsError extends Error {
  constructor(readonly details: string[]) {
    super(`invalid environment:\n  ${details.join("\n  ")}`);
  }
}

/** `baseDir` is the sink package directory, against which a relative SINK_CONFIG is resolved. */
export function parseSettings(env: NodeJS.ProcessEnv, baseDir: string): Settings {
  const errors: string[] = [];
  const int = (name: string, def: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === "") return def;
    const n = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || n < min || n > max) {
      errors.push(`${name}=${JSON.stringify(raw)}: must be an integer from ${min} to ${max}`);
      return def;
    }
    return n;
  };
  const bool = (name: string, def: boolean): boolean => {
    const raw = env[name]?.toLowerCase();
    if (raw === undefined || raw === "") return def;
    if (["1", "true", "yes", "on"].includes(raw)) return true;
    if (["0", "false", "no", "off"].includes(raw)) return false;
    errors.push(`${name}=${JSON.stringify(env[name])}: must be true or false`);
    return def;
  };
  const config = env.SINK_CONFIG || "config/sink.yaml";
  const settings: Settings = {
    host: env.SINK_HOST || "0.0.0.0",
    smtpPort: int("SINK_SMTP_PORT", 2525, 0, 65535),
    httpPort: int("SINK_HTTP_PORT", 8025, 0, 65535),
    sitePorts: [],
    hostname: env.SINK_HOSTNAME || "sink.kumomta-tilt.local",
    configPath: isAbsolute(config) ? config : resolve(baseDir, config),
    configPollMs: int("SINK_CONFIG_POLL_MS", 1000, 100, 3_600_000),
    scenario: env.SINK_SCENARIO || undefined,
    seed: int("SINK_SEED", randomInt(0, 2 ** 31), 0, 2 ** 32 - 1),
    maxConnections: int("SINK_MAX_CONNECTIONS", 10_000, 1, 1_000_000),
    idleTimeoutMs: int("SINK_IDLE_TIMEOUT_MS", 300_000, 100, 86_400_000),
    maxMessageSize: int("SINK_MAX_MESSAGE_SIZE", 52_428_800, 1, 2 ** 40),
    maxRecipients: int("SINK_MAX_RECIPIENTS", 1000, 1, 1_000_000),
    maxLineLength: int("SINK_MAX_LINE_LENGTH", 4096, 512, 1_048_576),
    maxErrors: int("SINK_MAX_ERRORS", 20, 1, 1_000_000),
    maxDomains: int("SINK_MAX_DOMAINS", 200, 1, 100_000),
    maxClients: int("SINK_MAX_CLIENTS", 64, 1, 10_000),
    drainTimeoutMs: int("SINK_DRAIN_TIMEOUT_MS", 25_000, 0, 3_600_000),
    tlsCert: env.SINK_TLS_CERT || undefined,
    tlsKey: env.SINK_TLS_KEY || undefined,
    starttls: bool("SINK_STARTTLS", false),
    logConnections: bool("SINK_LOG_CONNECTIONS", true),
  };
  settings.sitePorts = parseSitePorts(env.SINK_SITE_PORTS ?? "", settings, errors);
  if (/[\s\r\n]/.test(settings.hostname)) errors.push("SINK_HOSTNAME: must not contain whitespace");
  if ((settings.tlsCert === undefined) !== (settings.tlsKey === undefined)) {
    errors.push("SINK_TLS_CERT and SINK_TLS_KEY: set both (PEM files) to offer STARTTLS, or neither");
  }
  if (errors.length > 0) throw new SettingsError(errors);
  return settings;
}

/**
 * SINK_SITE_PORTS, e.g. "google=2526,yahoo=2527": site names are labels, ports distinct from each other and from
 * SINK_SMTP_PORT and SINK_HTTP_PORT. Port 0 (an ephemeral port, for tests) may repeat.
 */
function parseSitePorts(raw: string, settings: Settings, errors: string[]): SitePort[] {
  const out: SitePort[] = [];
  const err = (msg: string) => errors.push(`SINK_SITE_PORTS=${JSON.stringify(raw)}: ${msg}`);
  const fixed = new Map([
    [settings.smtpPort, "SINK_SMTP_PORT"],
    [settings.httpPort, "SINK_HTTP_PORT"],
  ]);
  for (const item of raw.split(",")) {
    const entry = item.trim();
    if (entry === "") continue;
    const m = entry.match(/^([^=\s]+)\s*=\s*(\d+)$/);
    if (!m) {
      err(`${JSON.stringify(entry)} is not site=port (e.g. google=2526,yahoo=2527,outlook=2528)`);
      continue;
    }
    const site = m[1] as string;
    const port = Number(m[2]);
    if (!SITE_NAME.test(site)) {
      err(`site ${JSON.stringify(site)} must be a lower-case label (a-z, 0-9, inner '-')`);
    } else if (site === DEFAULT_SITE) {
      err(`site "${DEFAULT_SITE}" is the site of SINK_SMTP_PORT; choose another name`);
    } else if (out.some((s) => s.site === site)) err(`site ${site} is listed twice`);
    if (port > 65535) err(`port ${port} of ${site} must be from 1 to 65535`);
    else if (port !== 0) {
      const clash = fixed.get(port) ?? out.find((s) => s.port === port)?.site;
      if (clash !== undefined) err(`port ${port} of ${site} is already used by ${clash}`);
    }
    out.push({ site, port });
  }
  return out;
}
