/** The SMTP listeners (the default port and one per provider site): connection limit, sessions, graceful drain. */
import { createServer, type Server, type Socket } from "node:net";
import type { SecureContext } from "node:tls";
import { log } from "../log.ts";
import type { CompiledScenario } from "../rules/engine.ts";
import type { Settings } from "../settings.ts";
import { DEFAULT_SITE, siteGreeting } from "../sites.ts";
import type { Stats } from "../stats.ts";
import { Session, type SessionContext, type SiteContext } from "./session.ts";

export interface SmtpListener {
  site: string;
  /** The port to listen on (0: ephemeral). */
  port: number;
  server: Server;
}

export interface SmtpServer {
  /** The default port's listener first (site "other"), then one per SINK_SITE_PORTS entry. */
  listeners: SmtpListener[];
  /** Stops accepting, lets transactions in flight finish, resolves when every connection is closed. */
  drain(timeoutMs: number): Promise<{ forced: number }>;
  draining(): boolean;
}

function ehloReply(settings: Settings, host: string, starttls: boolean): string {
  const lines = [
    `${host} Hello`,
    "PIPELINING",
    `SIZE ${settings.maxMessageSize}`,
    "8BITMIME",
    "SMTPUTF8",
    "ENHANCEDSTATUSCODES",
    ...(starttls ? ["STARTTLS"] : []),
  ];
  return lines.map((l, i) => `250${i === lines.length - 1 ? " " : "-"}${l}\r\n`).join("");
}

export function createSmtpServer(
  settings: Settings,
  stats: Stats,
  scenario: () => CompiledScenario,
  tls: SecureContext | null,
): SmtpServer {
  const sessions = new Set<Session>();
  let draining = false;
  let onEmpty: (() => void) | null = null;
  const ctx: SessionContext = {
    settings,
    stats,
    scenario,
    tls,
    draining: () => draining,
    onClose: (s) => {
      sessions.delete(s);
      if (sessions.size === 0) onEmpty?.();
    },
  };
  const listen = (site: string, port: number): SmtpListener => {
    const { host, banner } = siteGreeting(site, settings.hostname);
    const siteCtx: SiteContext = {
      name: site,
      banner: `220 ${host} ${banner}`,
      helo: `250 ${host}\r\n`,
      ehlo: ehloReply(settings, host, tls !== null),
      ehloAfterTls: ehloReply(settings, host, false),
      counts: stats.site(site),
    };
    // Sessions read through their own sockets (shared-read.ts); Node's socket must not start reading first.
    const server = createServer({ pauseOnConnect: true }, (socket: Socket) => {
      if (draining || stats.connectionsActive >= settings.maxConnections) {
        // Refused before a session exists: one reply, no state kept.
        stats.reply(0, 421);
        socket.on("error", () => {});
        socket.end("421 4.7.0 Too many connections, try again later\r\n", () => socket.destroy());
        return;
      }
      sessions.add(new Session(socket, ctx, siteCtx));
    });
    // Accept failures (e.g. EMFILE) must not kill the process; listen errors are handled by the caller.
    server.on("error", (err: NodeJS.ErrnoException) => {
      if (server.listening) log("warn", "smtp accept failed", { site, error: err.code ?? err.message });
    });
    return { site, port, server };
  };
  const listeners = [
    listen(DEFAULT_SITE, settings.smtpPort),
    ...settings.sitePorts.map(({ site, port }) => listen(site, port)),
  ];
  return {
    listeners,
    draining: () => draining,
    drain(timeoutMs) {
      draining = true;
      for (const l of listeners) l.server.close();
      return new Promise((resolve) => {
        if (sessions.size === 0) return resolve({ forced: 0 });
        const timer = setTimeout(() => {
          const forced = sessions.size;
          for (const s of sessions) s.socket.destroy();
          resolve({ forced });
        }, timeoutMs);
        onEmpty = () => {
          clearTimeout(timer);
          resolve({ forced: 0 });
        };
        for (const s of [...sessions]) s.drain();
      });
    },
  };
}
