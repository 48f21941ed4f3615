import http from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach } from "vitest";

/**
 * A stand-in for kumod's POST /api/inject/v1 that enforces the documented contract (kumomta.md §2-3):
 * basic auth (401 text body), a request body limit (413), deny_unknown_fields (422 with serde's text),
 * template syntax errors (422), scripted 503 sequences, and per-recipient failures in a 200 reply.
 * Written independently of the injector's own validator so the two check each other.
 */
export interface FakeKumodOptions {
  user?: string;
  password?: string;
  bodyLimit?: number;
  /** Statuses answered to the first requests, in order, before normal processing (e.g. [503, 503]). */
  script?: number[];
  /** Top-level fields this "kumod" knows (a different pinned version). */
  topFields?: string[];
  /** Recipients whose local part contains this are rejected in the 200 reply. */
  rejectMarker?: string;
  /**
   * Inject requests (counted from 0) that are spooled and then get no reply: the connection is destroyed, as when
   * kumod dies after spooling. Recorded with status 200 and `dropped`.
   */
  dropAfterSpool?: number[];
  /** Called after the reply for every recipient accepted (verify tests deliver them to the real sink). */
  onAccepted?: (email: string, payload: Record<string, unknown>) => Promise<void>;
}

export interface ReceivedRequest {
  at: number;
  status: number;
  recipients: string[];
  body: Record<string, unknown> | undefined;
  authorization?: string;
  /** Spooled, but the connection was destroyed instead of answering. */
  dropped?: boolean;
}

/** When a scripted restart went through its phases (performance.now() clock of the test process). */
export interface RestartTimes {
  sheddingFrom: number;
  goneFrom: number;
  backFrom: number;
}

const TOP = [
  "envelope_sender",
  "content",
  "recipients",
  "substitutions",
  "template_dialect",
  "deferred_spool",
  "deferred_generation",
  "trace_headers",
];
const CONTENT = ["text_body", "html_body", "amp_html_body", "headers", "from", "reply_to", "subject", "attachments"];
const RECIPIENT = ["email", "name", "substitutions", "metadata"];

function unknownField(obj: Record<string, unknown>, allowed: string[]): string | undefined {
  return Object.keys(obj).find((k) => !allowed.includes(k));
}

function serdeUnknown(field: string, allowed: string[]): string {
  const list = allowed.map((f) => `\`${f}\``).join(", ");
  return `Failed to deserialize the JSON body into the target type: unknown field \`${field}\`, expected one of ${list} at line 1 column 42`;
}

export class FakeKumod {
  readonly requests: ReceivedRequest[] = [];
  private server?: http.Server;
  private scriptIndex = 0;
  private injectIndex = 0;
  /** Answers 503 "Error: shutting down" to every inject, like a kumod in its graceful stop. */
  private shuttingDown = false;
  private port = 0;
  private closed = false;
  /** Every inject request is read and its connection destroyed without a reply, nothing spooled. */
  dropEverything = false;
  url = "";

  constructor(private readonly opts: FakeKumodOptions = {}) {}

  /** Recipients spooled (a 200, or spooled and then dropped): what a real kumod would deliver. */
  get recipientsAccepted(): number {
    return this.requests.filter((r) => r.status === 200).reduce((s, r) => s + r.recipients.length, 0);
  }

  async start(): Promise<this> {
    await this.listen(0);
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  private async listen(port: number): Promise<void> {
    const server = http.createServer((req, res) => this.handle(req, res));
    this.server = server;
    await new Promise<void>((r) => server.listen(port, "127.0.0.1", r));
    this.port = (server.address() as AddressInfo).port;
  }

  /** For good: a scripted restart still under way does not listen again. */
  async close(): Promise<void> {
    this.closed = true;
    await this.stopListening();
  }

  private async stopListening(): Promise<void> {
    const server = this.server;
    if (!server?.listening) return;
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }

  /**
   * A kumod pod restarting as measured against the real kumod: once `afterAccepted` recipients are spooled, it
   * answers 503 "Error: shutting down" for `sheddingMs`, then its listener is gone (connections refused, open ones
   * dropped) for `goneMs` (`Infinity`: never back), then it listens again on the same port with nothing lost.
   */
  async restart(opts: { afterAccepted: number; sheddingMs: number; goneMs: number }): Promise<RestartTimes> {
    while (this.recipientsAccepted < opts.afterAccepted && !this.closed) await sleep(5);
    const sheddingFrom = performance.now();
    this.shuttingDown = true;
    await sleep(opts.sheddingMs);
    const goneFrom = performance.now();
    await this.stopListening();
    this.shuttingDown = false;
    if (opts.goneMs === Number.POSITIVE_INFINITY) return { sheddingFrom, goneFrom, backFrom: Number.NaN };
    await sleep(opts.goneMs);
    if (!this.closed) await this.listen(this.port);
    return { sheddingFrom, goneFrom, backFrom: performance.now() };
  }

  private reply(res: http.ServerResponse, rec: ReceivedRequest, status: number, text: string) {
    rec.status = status;
    this.requests.push(rec);
    res.writeHead(status, { "content-type": status === 200 ? "application/json" : "text/plain; charset=utf-8" });
    res.end(text);
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const at = performance.now();
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (this.opts.bodyLimit !== undefined && size > this.opts.bodyLimit) tooLarge = true;
      else chunks.push(c);
    });
    req.on("end", () => void this.process(req, res, at, tooLarge, Buffer.concat(chunks).toString("utf8")));
  }

  private process(req: http.IncomingMessage, res: http.ServerResponse, at: number, tooLarge: boolean, raw: string) {
    const rec: ReceivedRequest = {
      at,
      status: 0,
      recipients: [],
      body: undefined,
      authorization: req.headers.authorization,
    };
    if (req.method !== "POST" || req.url !== "/api/inject/v1") return this.reply(res, rec, 404, "Not Found");
    if (this.opts.user !== undefined) {
      const expected = `Basic ${Buffer.from(`${this.opts.user}:${this.opts.password ?? ""}`).toString("base64")}`;
      if (req.headers.authorization !== expected) {
        return this.reply(res, rec, 401, `Error: ${this.opts.user} not permitted POST on http_listener/inject`);
      }
    }
    if (tooLarge) return this.reply(res, rec, 413, "Failed to buffer the request body: length limit exceeded");
    if (this.shuttingDown) return this.reply(res, rec, 503, "Error: shutting down");
    const index = this.injectIndex++;
    if (this.dropEverything) {
      this.requests.push(rec);
      res.socket?.destroy();
      return;
    }
    const scripted = this.opts.script?.[this.scriptIndex];
    if (scripted !== undefined) {
      this.scriptIndex++;
      return this.reply(res, rec, scripted, scripted === 503 ? "Error: load shedding" : `Error: scripted ${scripted}`);
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return this.reply(res, rec, 400, "Failed to parse the request body as JSON");
    }
    rec.body = body;
    const top = this.opts.topFields ?? TOP;
    const badTop = unknownField(body, top);
    if (badTop) return this.reply(res, rec, 422, serdeUnknown(badTop, top));
    for (const req of ["envelope_sender", "content", "recipients"]) {
      if (!(req in body)) {
        return this.reply(
          res,
          rec,
          422,
          `Failed to deserialize the JSON body into the target type: missing field \`${req}\``,
        );
      }
    }
    const content = body.content as Record<string, unknown>;
    if (typeof content === "object") {
      const bad = unknownField(content, CONTENT);
      if (bad) return this.reply(res, rec, 422, serdeUnknown(bad, CONTENT));
      const text = String(content.text_body ?? "");
      if (text.includes("{{") && !/\{\{[^}]*\}\}/.test(text)) {
        return this.reply(
          res,
          rec,
          422,
          "Error: failed to parse template: unexpected end of input, expected end of variable block",
        );
      }
    }
    const recipients = body.recipients as Record<string, unknown>[];
    for (const r of recipients) {
      const bad = unknownField(r, RECIPIENT);
      if (bad) return this.reply(res, rec, 422, serdeUnknown(bad, RECIPIENT));
    }
    rec.recipients = recipients.map((r) => String(r.email));
    const failed = rec.recipients.filter(
      (e) => this.opts.rejectMarker !== undefined && e.includes(this.opts.rejectMarker),
    );
    const accepted = rec.recipients.filter((e) => !failed.includes(e));
    if (this.opts.dropAfterSpool?.includes(index)) {
      rec.status = 200;
      rec.dropped = true;
      this.requests.push(rec);
      res.socket?.destroy();
      return;
    }
    this.reply(
      res,
      rec,
      200,
      JSON.stringify({
        success_count: body.deferred_generation ? 0 : accepted.length,
        fail_count: failed.length,
        failed_recipients: failed,
        errors: failed.map((e) => `${e}: 550 5.7.1 rejected by policy`),
      }),
    );
    // Like kumod: reply once spooled, deliver afterwards.
    for (const e of accepted) void this.opts.onAccepted?.(e, body);
  }
}

/** Fake kumods for one test file: each test's servers are closed after it. */
export function fakeKumods(): (opts?: FakeKumodOptions) => Promise<FakeKumod> {
  const servers: FakeKumod[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });
  return async (opts = {}) => {
    const k = await new FakeKumod(opts).start();
    servers.push(k);
    return k;
  };
}
