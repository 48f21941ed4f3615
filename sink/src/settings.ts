/** Environment → settings, validated once at start; every problem is reported together. */
import { randomInt } from "node:crypto";
import { isAbsolute, resolve } from "node:path";

export interface Settings {
  host: string;
  smtpPort: number;
  httpPort: number;
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
    drainTimeoutMs: int("SINK_DRAIN_TIMEOUT_MS", 25_000, 0, 3_600_000),
    tlsCert: env.SINK_TLS_CERT || undefined,
    tlsKey: env.SINK_TLS_KEY || undefined,
    starttls: bool("SINK_STARTTLS", false),
    logConnections: bool("SINK_LOG_CONNECTIONS", true),
  };
  if (/[\s\r\n]/.test(settings.hostname)) errors.push("SINK_HOSTNAME: must not contain whitespace");
  if ((settings.tlsCert === undefined) !== (settings.tlsKey === undefined)) {
    errors.push("SINK_TLS_CERT and SINK_TLS_KEY: set both (PEM files) to offer STARTTLS, or neither");
  }
  if (errors.length > 0) throw new SettingsError(errors);
  return settings;
}
