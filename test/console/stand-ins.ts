/**
 * Stand-ins for what cannot run here (kumod, tsa-daemon), speaking their real formats: kumod's /metrics in the
 * metric names and labels of KumoCorp/kumomta docs/reference/kumod-metrics.json (kumomta.md §4), tsa-daemon's
 * suspended.json and shaping.toml as crates/tsa-daemon/src/http_server.rs writes them. The sink is the real one.
 */
import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { type BrowserContext, chromium } from "playwright-core";

export const repoRoot = path.resolve(import.meta.dirname, "../..");

export interface ReadyQueue {
  source: string;
  site: string;
  ready: number;
  connections: number;
  delivered: number;
  transfail: number;
  fail: number;
}

export interface KumodMetrics {
  received: { esmtp_listener: number; http_listener: number };
  /** scheduled_count by scheduled queue name ([campaign:][tenant@]domain). */
  scheduled: Record<string, number>;
  readyQueues: ReadyQueue[];
  /** Deliveries of the TSA publish log hook: must not count as mail. */
  hookDelivered?: number;
}

const service = (q: ReadyQueue) => `smtp_client:${q.source}->${q.site}@smtp_client`;

export function kumodMetricsText(m: KumodMetrics): string {
  const lines: string[] = [];
  const metric = (name: string, type: string, help: string, samples: [string, number][]) => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  const perQueue = (f: (q: ReadyQueue) => number): [string, number][] =>
    m.readyQueues.map((q) => [`{service="${service(q)}"}`, f(q)]);
  metric("total_messages_received", "counter", "total number of messages ever received", [
    ['{service="esmtp_listener"}', m.received.esmtp_listener],
    ['{service="http_listener"}', m.received.http_listener],
  ]);
  metric(
    "scheduled_count",
    "gauge",
    "number of messages in the scheduled queue.",
    Object.entries(m.scheduled).map(([queue, n]) => [`{queue="${queue}"}`, n]),
  );
  metric("scheduled_count_total", "gauge", "total number of messages across all scheduled queues.", [
    ["", Object.values(m.scheduled).reduce((a, b) => a + b, 0)],
  ]);
  metric(
    "ready_count",
    "gauge",
    "number of messages in the ready queue",
    perQueue((q) => q.ready),
  );
  metric(
    "connection_count",
    "gauge",
    "The number of active outgoing connections in the system,  keyed by the service name.",
    perQueue((q) => q.connections),
  );
  metric("total_messages_delivered", "counter", "total number of messages ever delivered", [
    ...perQueue((q) => q.delivered),
    ['{service="lua:tsa-publish"}', m.hookDelivered ?? 0],
  ]);
  metric(
    "total_messages_transfail",
    "counter",
    "total number of message delivery attempts that transiently failed",
    perQueue((q) => q.transfail),
  );
  metric(
    "total_messages_fail",
    "counter",
    "total number of message delivery attempts that permanently failed",
    perQueue((q) => q.fail),
  );
  metric("memory_usage", "gauge", "number of bytes of used memory (Resident Set Size)", [["", 123456789]]);
  metric("deliver_message_latency_rollup", "histogram", "how many seconds a deliver_message call takes", [
    ['_bucket{service="smtp_client",le="0.005"}', 3],
    ['_bucket{service="smtp_client",le="+Inf"}', 5],
    ['_sum{service="smtp_client"}', 0.02],
    ['_count{service="smtp_client"}', 5],
  ]);
  return `${lines.join("\n")}\n`;
}

/** A loopback HTTP server on an ephemeral port; close() makes it go away like a deleted pod. */
abstract class StandInServer {
  private server?: http.Server;
  url = "";

  /** [status, content-type, body] for a request's URL; undefined answers an empty 404. */
  protected abstract answer(url: string): [number, string, string] | undefined;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => {
      const answer = this.answer(req.url ?? "");
      if (answer) {
        const [status, type, body] = answer;
        res.writeHead(status, { "content-type": type });
        res.end(body);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((r) => this.server?.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** One kumod "pod", serving /metrics. */
export class StandInKumod extends StandInServer {
  /** Answer like kumod does to a peer outside its trusted hosts. */
  untrusted = false;

  constructor(public metrics: KumodMetrics) {
    super();
  }

  protected answer(url: string): [number, string, string] | undefined {
    if (this.untrusted) return [401, "text/plain", "Unauthorized"];
    if (url.startsWith("/metrics")) return [200, "text/plain; version=0.0.4", kumodMetricsText(this.metrics)];
    return undefined;
  }
}

export interface TsaSuspension {
  rule_hash: string;
  site_name: string;
  reason: string;
  source: string;
  expires: string;
}

export interface TsaOverride {
  domain: string;
  mxRollup: boolean;
  source: string;
  name: string;
  /** Already in TOML syntax, e.g. "\"1/h\"" or "2". */
  value: string;
  reason: string;
  expires: string;
}

/** shaping.toml as tsa-daemon's do_get_config renders it through toml_edit. */
export function tsaShapingToml(overrides: TsaOverride[]): string {
  const out = [`# Generated by tsa-daemon`, `# Number of entries: ${overrides.length}`, ""];
  const domains = [...new Set(overrides.map((o) => o.domain))];
  for (const domain of domains) {
    const mine = overrides.filter((o) => o.domain === domain);
    out.push(`["${domain}"]`, `mx_rollup = ${mine[0]?.mxRollup}`, "", `["${domain}".sources]`, "");
    for (const source of [...new Set(mine.map((o) => o.source))]) {
      out.push(`["${domain}".sources.${source}]`);
      for (const o of mine.filter((x) => x.source === source))
        out.push(`# reason: ${o.reason}`, `# expires: ${o.expires}`, `${o.name} = ${o.value}`);
      out.push("");
    }
  }
  return out.join("\n");
}

/** Gmail's 4.7.28 reply makes TSA suspend its site, as the shaping rules' automation does. */
export const tsaGmailSuspension = (expires: string): TsaSuspension => ({
  rule_hash: "5b1e0c9d2f4a7b3e8c1d6f0a9b2e4c7d1f3a5b8c0e2d4f6a8b1c3e5d7f9a0b2c",
  site_name: "unspecified->(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com@smtp_client",
  reason: "automation rule: /4\\.7\\.28/",
  source: "unspecified",
  expires,
});

/** Yahoo's [TSS04] reply makes TSA slow yahoo.com to one message an hour, as the shaping rules' automation does. */
export const tsaYahooRateOverride = (expires: string): TsaOverride => ({
  domain: "yahoo.com",
  mxRollup: true,
  source: "unspecified",
  name: "max_message_rate",
  value: '"1/h"',
  reason: "automation rule: /\\[TSS04\\]/",
  expires,
});

export class StandInTsa extends StandInServer {
  suspensions: TsaSuspension[] = [];
  overrides: TsaOverride[] = [];

  protected answer(url: string): [number, string, string] | undefined {
    if (url === "/get_suspension_v1/suspended.json")
      return [200, "application/json", JSON.stringify({ ready_q: this.suspensions })];
    if (url === "/get_config_v1/shaping.toml")
      return [200, "text/plain; charset=utf-8", tsaShapingToml(this.overrides)];
    return undefined;
  }
}

export interface RunningConsole {
  url: string;
  stop(): Promise<void>;
}

/** `npm run console`'s program (the image's entrypoint too), on an ephemeral loopback port. */
export const CONSOLE_COMMAND = ["node", "--import", "tsx", "scripts/console/main.ts"];

export async function startConsole(
  args: string[],
  env: Record<string, string> = {},
  command: string[] = CONSOLE_COMMAND,
): Promise<RunningConsole> {
  const [file, ...rest] = command as [string, ...string[]];
  const child: ResultPromise = execa(file, [...rest, "--port", "0", ...args], {
    cwd: repoRoot,
    reject: false,
    env,
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`console did not start within 30 s:\n${out}`)), 30_000);
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      const m = /console listening on (http:\/\/\S+\/)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    child.then((r) => {
      clearTimeout(timer);
      reject(new Error(`console exited (${r.exitCode}) before listening:\n${r.stdout}\n${r.stderr}`));
    });
  });
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await child;
    },
  };
}

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

/** Debian's chromium, headless, with a fresh profile; never a downloaded browser. */
export async function launchChromium(
  executable: string = CHROMIUM,
): Promise<{ context: BrowserContext; close(): Promise<void> }> {
  if (!existsSync(executable))
    throw new Error(
      `chromium not found at ${executable}: install Debian's package (apt-get update && apt-get install -y chromium) or set CHROMIUM_PATH`,
    );
  const profile = await mkdtemp(path.join(tmpdir(), "console-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: executable,
    headless: true,
    viewport: { width: 1400, height: 1300 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  return { context, close: () => context.close() };
}
