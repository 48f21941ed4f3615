/** Entry point: settings from the environment, rules from SINK_CONFIG, SMTP and HTTP listeners, graceful stop. */
import { readFileSync } from "node:fs";
import type { AddressInfo, Server } from "node:net";
import { fileURLToPath } from "node:url";
import { watchConfig } from "./config-watch.ts";
import { createHttpServer } from "./http.ts";
import { log } from "./log.ts";
import { ConfigError, parseConfig, type SinkConfig } from "./rules/config.ts";
import { ScenarioControl } from "./rules/control.ts";
import { parseSettings, type Settings, SettingsError } from "./settings.ts";
import { DEFAULT_SITE } from "./sites.ts";
import { createSmtpServer } from "./smtp/server.ts";
import { Stats } from "./stats.ts";
import { setupTls } from "./tls.ts";

/** Exit codes: 2 = invalid settings, rules file or certificate; 1 = could not listen or other failure. */
function fail(code: number, msg: string, details: string[]): never {
  log("error", msg, { details });
  process.exit(code);
}

function loadSettings(): Settings {
  try {
    return parseSettings(process.env, fileURLToPath(new URL("..", import.meta.url)));
  } catch (err) {
    if (err instanceof SettingsError) fail(2, "invalid environment", err.details);
    throw err;
  }
}

function loadConfig(path: string): { text: string; config: SinkConfig } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    fail(2, "cannot read the rules file (SINK_CONFIG)", [`${path}: ${(err as Error).message}`]);
  }
  try {
    return { text, config: parseConfig(text) };
  } catch (err) {
    if (err instanceof ConfigError) fail(2, `invalid rules file ${path}`, err.details);
    throw err;
  }
}

function listen(server: Server, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host, backlog: 4096 }, () => resolve((server.address() as AddressInfo).port));
  });
}

async function main(): Promise<void> {
  const settings = loadSettings();
  const { text, config } = loadConfig(settings.configPath);
  const tls = setupTls(settings, fail);
  const stats = new Stats(settings.maxDomains, settings.maxClients);
  let control: ScenarioControl;
  try {
    control = new ScenarioControl(config, settings.scenario, settings.seed, (rule) => stats.fault(rule));
  } catch (err) {
    fail(2, "invalid SINK_SCENARIO", [(err as Error).message]);
  }
  const smtp = createSmtpServer(settings, stats, () => control.active, tls.context);
  const http = createHttpServer(stats, control, () => !smtp.draining());
  const bound: number[] = [];
  let httpPort: number;
  let what = "";
  try {
    for (const l of smtp.listeners) {
      what = l.site === DEFAULT_SITE ? "SINK_SMTP_PORT" : `SMTP port of site ${l.site}`;
      bound.push(await listen(l.server, l.port, settings.host));
    }
    what = "SINK_HTTP_PORT";
    httpPort = await listen(http, settings.httpPort, settings.host);
  } catch (err) {
    fail(1, "cannot listen", [`${what}: ${(err as Error).message}`]);
  }
  // The ports actually bound: with port 0 (tests) they are only known now.
  const sitePorts = Object.fromEntries(smtp.listeners.slice(1).map((l, i) => [l.site, bound[i + 1]]));
  const stopWatching = watchConfig(settings.configPath, text, settings.configPollMs, (c) => control.reload(c));
  log("info", "listening", {
    host: settings.host,
    smtp_port: bound[0],
    site_ports: sitePorts,
    http_port: httpPort,
    scenario: control.active.def.name,
    seed: settings.seed,
    starttls: tls.source,
    config: settings.configPath,
    max_message_size: settings.maxMessageSize,
    max_connections: settings.maxConnections,
  });

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log("info", "draining", { signal, active_connections: stats.connectionsActive });
    stopWatching();
    const { forced } = await smtp.drain(settings.drainTimeoutMs);
    http.close();
    http.closeAllConnections();
    log("info", "stopped", {
      forced_closes: forced,
      messages_accepted: stats.messagesAccepted,
      connections_total: stats.connectionsTotal,
    });
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop("SIGTERM"));
  process.on("SIGINT", () => void stop("SIGINT"));
}

await main();
