/**
 * One SMTP connection: a state machine driven by raw socket reads. Replies produced while handling one read are
 * batched into one write (PIPELINING); DATA is scanned for its terminator and counted, never stored. Plaintext reads
 * arrive in a buffer shared by all connections, so nothing may keep a reference to it past `process`.
 */
import type { Socket } from "node:net";
import { type SecureContext, TLSSocket } from "node:tls";
import { type ClientSiteCounts, clientIp } from "../clients.ts";
import { log } from "../log.ts";
import {
  addressDirective,
  type CompiledScenario,
  DIRECTIVES_DATA,
  DIRECTIVES_OFF,
  newDecision,
  type PeerState,
  type SiteRules,
  STAGE_CONNECT,
  STAGE_DATA,
  STAGE_MAIL,
  STAGE_RCPT,
} from "../rules/engine.ts";
import type { Settings } from "../settings.ts";
import type { SiteCounts, Stats } from "../stats.ts";
import { localPart, newEnvelope, parseMailFrom, parseRcptTo, parseVerb, verbLength } from "./command.ts";
import { sharedReadSocket } from "./shared-read.ts";
import { EndOfDataScanner } from "./terminator.ts";

/** What every session shares: settings, counters, the active scenario and the server's drain state. */
export interface SessionContext {
  readonly settings: Settings;
  readonly stats: Stats;
  readonly scenario: () => CompiledScenario;
  readonly tls: SecureContext | null;
  readonly draining: () => boolean;
  readonly onClose: (session: Session) => void;
}

/** What the sessions of one listener share: the provider site they belong to, its greetings and its counters. */
export interface SiteContext {
  readonly name: string;
  /** The 220 line, without CRLF. */
  readonly banner: string;
  readonly helo: string;
  readonly ehlo: string;
  readonly ehloAfterTls: string;
  readonly counts: SiteCounts;
}

const MODE_COMMAND = 0;
const MODE_DATA = 1;
/** A client that does not read its replies must not make us buffer without bound. */
const MAX_PENDING_OUTPUT = 1 << 20;
const NO_STAGE = -1;

const OK = "250 2.0.0 Ok\r\n";
const OK_MAIL = "250 2.1.0 Ok";
const OK_RCPT = "250 2.1.5 Ok";
const OK_DATA = "250 2.0.0 Ok: queued";
const START_DATA = "354 End data with <CR><LF>.<CR><LF>\r\n";

// One decision and one envelope for the whole process: both are filled and consumed synchronously.
const decision = newDecision();
const envelope = newEnvelope();

export class Session implements PeerState {
  socket: Socket;
  readonly ip: string;
  readonly site: string;
  boundTo: CompiledScenario | null = null;
  siteRules: SiteRules | null = null;
  throttleCounts: Int32Array | null = null;

  private mode = MODE_COMMAND;
  private readonly scanner = new EndOfDataScanner();
  private carry: Buffer | null = null;
  private discarding = false;
  private helo = false;
  private tls = false;
  private mail = false;
  private smtputf8 = false;
  private rcptCount = 0;
  private readonly domains: string[] = [];
  /** Recipients with a "2xx-" directive, exempt from end-of-DATA rules. */
  private exempt = 0;
  /** A directive reply held for the end of DATA (directives: data). */
  private pendingLine: string | null = null;
  private dataBytes = 0;
  private out = "";
  private closing = false;
  private closed = false;
  private ended = false;
  private waiting = false;
  private timer: NodeJS.Timeout | null = null;
  /** The unprocessed rest of a read that arrived during a delay (a copy: reads share one buffer). */
  private resumeBuf: Buffer | null = null;
  private delayedLine = "";
  private delayedStage = NO_STAGE;
  private delayedCode = 0;
  private delayedDisconnect = false;
  private errors = 0;
  private messages = 0;
  private readonly startedAt = Date.now();
  private reason = "peer-closed";
  /** This client IP's counters on this site. */
  private readonly client: ClientSiteCounts;

  /** `accepted` must come from a server created with `pauseOnConnect`: the session takes over its connection. */
  constructor(
    accepted: Socket,
    private readonly ctx: SessionContext,
    private readonly siteCtx: SiteContext,
  ) {
    const socket = sharedReadSocket(accepted, this.onData);
    this.socket = socket;
    this.ip = clientIp(socket.remoteAddress);
    this.site = siteCtx.name;
    this.client = ctx.stats.clients.counts(this.ip, this.site);
    ctx.stats.connectionsActive++;
    ctx.stats.connectionsTotal++;
    siteCtx.counts.connections++;
    this.client.connections++;
    socket.setNoDelay(true);
    socket.setTimeout(ctx.settings.idleTimeoutMs);
    socket.on("timeout", this.onTimeout);
    socket.on("close", this.onClosed);
    socket.on("error", this.onError);
    this.greet();
  }

  private greet(): void {
    const scenario = this.ctx.scenario();
    let delay = 0;
    if (scenario.hasRules(STAGE_CONNECT, this)) {
      scenario.evaluate(STAGE_CONNECT, this, this.domains, 0, 0, decision);
      if (decision.disconnect) {
        this.abort(decision.delayMs, "rule-disconnect");
        return;
      }
      if (decision.reply !== null) {
        this.reason = "refused";
        this.respond(STAGE_CONNECT, decision.code, decision.reply, decision.delayMs, true);
        this.flush();
        return;
      }
      delay = decision.delayMs;
    }
    this.respond(STAGE_CONNECT, 220, this.siteCtx.banner, delay);
    this.flush();
  }

  /** Server shutdown: an idle session is told now; one mid-transaction is told after its final reply. */
  drain(): void {
    if (this.closed) return;
    this.checkDrain();
    this.flush();
  }

  /** Plaintext reads (a view of the shared read buffer) and, after STARTTLS, the TLS socket's decrypted chunks. */
  private readonly onData = (buf: Buffer): void => {
    this.process(buf, 0);
  };

  private readonly onError = (err: NodeJS.ErrnoException): void => {
    this.reason = `error:${err.code ?? "unknown"}`;
  };

  private readonly onTimeout = (): void => {
    if (this.waiting || this.closed) return;
    if (this.closing) {
      // Told to go and still here (not reading our last reply): drop it.
      this.socket.destroy();
      return;
    }
    this.reason = "idle-timeout";
    this.out += "421 4.4.2 Idle timeout exceeded, closing connection\r\n";
    this.closing = true;
    this.flush();
  };

  private readonly onClosed = (): void => {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.ctx.stats.connectionsActive--;
    if (this.ctx.settings.logConnections) {
      log("info", "connection", {
        peer: this.ip,
        site: this.site,
        tls: this.tls,
        messages: this.messages,
        duration_ms: Date.now() - this.startedAt,
        reason: this.reason,
      });
    }
    this.ctx.onClose(this);
  };

  private process(buf: Buffer, start: number): void {
    let offset = start;
    const maxLine = this.ctx.settings.maxLineLength;
    while (offset < buf.length && !this.closing && !this.waiting) {
      if (this.mode === MODE_DATA) {
        const end = this.scanner.scan(buf, offset);
        if (end < 0) {
          this.dataBytes += buf.length - offset;
          break;
        }
        this.dataBytes += end - offset;
        offset = end;
        this.endOfData();
        continue;
      }
      const lf = buf.indexOf(10, offset);
      if (lf < 0) {
        this.keepPartialLine(buf, offset);
        break;
      }
      let line: string;
      if (this.discarding) {
        this.discarding = false;
        offset = lf + 1;
        this.syntaxError("500 5.5.2 Error: line too long");
        continue;
      }
      if (this.carry !== null) {
        const whole = Buffer.concat([this.carry, buf.subarray(offset, lf)]);
        this.carry = null;
        offset = lf + 1;
        if (whole.length > maxLine) {
          this.syntaxError("500 5.5.2 Error: line too long");
          continue;
        }
        line = whole.toString(
          "utf8",
          0,
          whole.length > 0 && whole[whole.length - 1] === 13 ? whole.length - 1 : whole.length,
        );
      } else {
        if (lf - offset > maxLine) {
          offset = lf + 1;
          this.syntaxError("500 5.5.2 Error: line too long");
          continue;
        }
        line = buf.toString("utf8", offset, lf > offset && buf[lf - 1] === 13 ? lf - 1 : lf);
        offset = lf + 1;
      }
      if (this.command(line)) return;
    }
    if (this.waiting && offset < buf.length) this.resumeBuf = Buffer.from(buf.subarray(offset));
    this.checkDrain();
    this.flush();
  }

  /** Keeps an incomplete command line for the next read, or starts discarding it once it is over the limit. */
  private keepPartialLine(buf: Buffer, offset: number): void {
    if (this.discarding) return;
    const rest = buf.length - offset;
    const have = this.carry === null ? 0 : this.carry.length;
    if (have + rest > this.ctx.settings.maxLineLength + 1) {
      this.carry = null;
      this.discarding = true;
      return;
    }
    const piece = Buffer.from(buf.subarray(offset));
    this.carry = this.carry === null ? piece : Buffer.concat([this.carry, piece]);
  }

  private checkDrain(): void {
    if (this.ctx.draining() && !this.mail && this.mode === MODE_COMMAND && !this.waiting && !this.closing) {
      this.reason = "shutdown";
      this.out += "421 4.3.2 Service shutting down, closing connection\r\n";
      this.closing = true;
    }
  }

  private flush(): void {
    if (this.closed) return;
    if (this.out !== "") {
      this.socket.write(this.out);
      this.out = "";
      if (this.socket.writableLength > MAX_PENDING_OUTPUT) {
        this.reason = "output-backlog";
        this.socket.destroy();
        return;
      }
    }
    if (this.closing && !this.ended) {
      this.ended = true;
      const socket = this.socket;
      socket.end(() => socket.destroy());
    }
  }

  /** Queues a reply, after an optional delay; a 421 (or `close`) ends the connection after it is sent. */
  private respond(stage: number, code: number, line: string, delayMs: number, close = false): void {
    if (delayMs > 0) {
      this.delayedLine = line;
      this.delayedStage = stage;
      this.delayedCode = code;
      this.delayedDisconnect = false;
      this.wait(delayMs);
      if (close) this.reason = "refused";
      return;
    }
    if (stage !== NO_STAGE) this.ctx.stats.reply(stage, code);
    this.out += `${line}\r\n`;
    if (code === 421 || close) {
      if (this.reason === "peer-closed") this.reason = code === 421 ? "reply-421" : "refused";
      this.closing = true;
    }
  }

  private abort(delayMs: number, reason: string): void {
    this.reason = reason;
    if (delayMs > 0) {
      this.delayedDisconnect = true;
      this.wait(delayMs);
      return;
    }
    this.closing = true;
    this.flush();
    this.socket.destroy();
  }

  private wait(delayMs: number): void {
    this.flush();
    this.waiting = true;
    this.socket.pause();
    this.timer = setTimeout(this.afterDelay, delayMs);
  }

  private readonly afterDelay = (): void => {
    this.timer = null;
    this.waiting = false;
    if (this.closed) return;
    if (this.delayedDisconnect) {
      this.closing = true;
      this.socket.destroy();
      return;
    }
    const close = this.reason === "refused";
    this.respond(this.delayedStage, this.delayedCode, this.delayedLine, 0, close);
    const buf = this.resumeBuf;
    this.resumeBuf = null;
    if (buf !== null && !this.closing) this.process(buf, 0);
    else {
      this.checkDrain();
      this.flush();
    }
    if (!this.waiting && !this.closing && !this.closed) this.socket.resume();
  };

  private syntaxError(line: string): void {
    this.out += `${line}\r\n`;
    if (++this.errors >= this.ctx.settings.maxErrors) {
      this.reason = "too-many-errors";
      this.out += "421 4.7.0 Too many errors, closing connection\r\n";
      this.closing = true;
    }
  }

  private resetTransaction(): void {
    this.mail = false;
    this.smtputf8 = false;
    this.rcptCount = 0;
    this.exempt = 0;
    this.pendingLine = null;
  }

  /** Handles one command line; returns true when the rest of the read must be dropped (STARTTLS). */
  private command(line: string): boolean {
    const verb = parseVerb(line);
    const argAt = verbLength(verb) + 1;
    switch (verb) {
      case "EHLO":
      case "HELO":
        if (line.length <= argAt || line.slice(argAt).trim() === "") {
          this.syntaxError(`501 5.5.4 Syntax: ${verb} hostname`);
          break;
        }
        this.resetTransaction();
        this.helo = true;
        this.out += verb === "HELO" ? this.siteCtx.helo : this.tls ? this.siteCtx.ehloAfterTls : this.siteCtx.ehlo;
        break;
      case "MAIL":
        this.mailFrom(line);
        break;
      case "RCPT":
        this.rcptTo(line);
        break;
      case "DATA":
        if (!this.mail) this.respond(STAGE_DATA, 503, "503 5.5.1 Error: need MAIL command", 0);
        else if (this.rcptCount === 0) this.respond(STAGE_DATA, 554, "554 5.5.1 Error: no valid recipients", 0);
        else if (line.length > 4 && line.slice(4).trim() !== "") this.syntaxError("501 5.5.4 Syntax: DATA");
        else {
          this.mode = MODE_DATA;
          this.scanner.reset();
          this.dataBytes = 0;
          this.out += START_DATA;
        }
        break;
      case "RSET":
        this.resetTransaction();
        this.out += OK;
        break;
      case "NOOP":
        this.out += OK;
        break;
      case "VRFY":
        this.out += "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery\r\n";
        break;
      case "HELP":
        this.out += "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY\r\n";
        break;
      case "QUIT":
        this.reason = "quit";
        this.out += "221 2.0.0 Bye\r\n";
        this.closing = true;
        break;
      case "STARTTLS":
        return this.startTls(line.length > 8 && line.slice(8).trim() !== "");
      case "EXPN":
      case "BDAT":
        this.syntaxError(`502 5.5.1 Error: ${verb} not implemented`);
        break;
      default:
        this.syntaxError("500 5.5.2 Error: command not recognized");
    }
    return false;
  }

  private mailFrom(line: string): void {
    if (!this.helo) {
      this.respond(STAGE_MAIL, 503, "503 5.5.1 Error: send HELO/EHLO first", 0);
      return;
    }
    if (this.mail) {
      this.respond(STAGE_MAIL, 503, "503 5.5.1 Error: nested MAIL command", 0);
      return;
    }
    const stats = this.ctx.stats;
    if (this.ctx.draining()) {
      this.reason = "shutdown";
      this.respond(STAGE_MAIL, 421, "421 4.3.2 Service shutting down, closing connection", 0);
      return;
    }
    const error = parseMailFrom(line, 5, envelope);
    if (error !== null) {
      this.ctx.stats.reply(STAGE_MAIL, Number(error.slice(0, 3)));
      this.syntaxError(error);
      return;
    }
    if (envelope.size > this.ctx.settings.maxMessageSize) {
      stats.messagesBounced++;
      this.client.messages.bounced++;
      this.respond(STAGE_MAIL, 552, "552 5.3.4 Message size exceeds fixed maximum message size", 0);
      return;
    }
    const scenario = this.ctx.scenario();
    let delay = 0;
    let code = 250;
    let reply = OK_MAIL;
    if (scenario.hasRules(STAGE_MAIL, this)) {
      scenario.evaluate(STAGE_MAIL, this, this.domains, 0, 0, decision);
      if (decision.disconnect) {
        this.abort(decision.delayMs, "rule-disconnect");
        return;
      }
      delay = decision.delayMs;
      if (decision.reply !== null && decision.code >= 400) {
        if (decision.code < 500) {
          stats.messagesDeferred++;
          this.client.messages.deferred++;
        } else {
          stats.messagesBounced++;
          this.client.messages.bounced++;
        }
        this.respond(STAGE_MAIL, decision.code, decision.reply, delay);
        return;
      }
      if (decision.reply !== null) {
        code = decision.code;
        reply = decision.reply;
      }
    }
    this.mail = true;
    this.smtputf8 = envelope.smtputf8;
    this.respond(STAGE_MAIL, code, reply, delay);
  }

  private rcptTo(line: string): void {
    if (!this.mail) {
      this.respond(STAGE_RCPT, 503, "503 5.5.1 Error: need MAIL command", 0);
      return;
    }
    const stats = this.ctx.stats;
    const error = parseRcptTo(line, 5, this.smtputf8, envelope);
    if (error !== null) {
      stats.reply(STAGE_RCPT, Number(error.slice(0, 3)));
      this.syntaxError(error);
      return;
    }
    const domain = envelope.domain;
    if (this.rcptCount >= this.ctx.settings.maxRecipients) {
      stats.recipientsDeferred++;
      stats.domain(domain).deferred++;
      this.siteCtx.counts.deferred++;
      this.client.recipients.deferred++;
      this.respond(STAGE_RCPT, 452, "452 4.5.3 Error: too many recipients", 0);
      return;
    }
    const scenario = this.ctx.scenario();
    let exempt = false;
    if (scenario.directives !== DIRECTIVES_OFF) {
      const directive = addressDirective(localPart(envelope));
      if (directive === "") exempt = true;
      else if (directive !== null) {
        if (scenario.directives === DIRECTIVES_DATA) {
          if (this.pendingLine === null) this.pendingLine = directive;
        } else {
          this.refuseRecipient(domain, Number(directive.slice(0, 3)), directive, 0);
          return;
        }
      }
    }
    let reply = OK_RCPT;
    let code = 250;
    let delay = 0;
    this.domains[this.rcptCount] = domain;
    if (!exempt && scenario.hasRules(STAGE_RCPT, this)) {
      scenario.evaluate(STAGE_RCPT, this, this.domains, this.rcptCount, this.rcptCount + 1, decision);
      if (decision.disconnect) {
        this.abort(decision.delayMs, "rule-disconnect");
        return;
      }
      delay = decision.delayMs;
      if (decision.reply !== null) {
        if (decision.code >= 400) {
          this.refuseRecipient(domain, decision.code, decision.reply, delay);
          return;
        }
        reply = decision.reply;
        code = decision.code;
      }
    }
    this.rcptCount++;
    if (exempt) this.exempt++;
    this.respond(STAGE_RCPT, code, reply, delay);
  }

  private refuseRecipient(domain: string, code: number, line: string, delay: number): void {
    const stats = this.ctx.stats;
    if (code < 500) {
      stats.recipientsDeferred++;
      stats.domain(domain).deferred++;
      this.siteCtx.counts.deferred++;
      this.client.recipients.deferred++;
    } else {
      stats.recipientsBounced++;
      stats.domain(domain).bounced++;
      this.siteCtx.counts.bounced++;
      this.client.recipients.bounced++;
    }
    this.respond(STAGE_RCPT, code, line, delay);
  }

  private endOfData(): void {
    this.mode = MODE_COMMAND;
    this.messages++;
    const stats = this.ctx.stats;
    // The scanner counted the final ".\r\n"; the CRLF before it belongs to the message.
    const bytes = this.dataBytes - 3;
    const n = this.rcptCount;
    let code = 250;
    let line = OK_DATA;
    let delay = 0;
    if (bytes > this.ctx.settings.maxMessageSize) {
      code = 552;
      line = "552 5.3.4 Message size exceeds fixed maximum message size";
    } else if (this.pendingLine !== null) {
      code = Number(this.pendingLine.slice(0, 3));
      line = this.pendingLine;
    } else if (this.exempt < n) {
      const scenario = this.ctx.scenario();
      if (scenario.hasRules(STAGE_DATA, this)) {
        scenario.evaluate(STAGE_DATA, this, this.domains, 0, n, decision);
        if (decision.disconnect) {
          this.resetTransaction();
          this.abort(decision.delayMs, "rule-disconnect");
          return;
        }
        delay = decision.delayMs;
        if (decision.reply !== null) {
          code = decision.code;
          line = decision.reply;
        }
      }
    }
    const domains = this.domains;
    const site = this.siteCtx.counts;
    const client = this.client;
    if (code < 400) {
      stats.messagesAccepted++;
      stats.recipientsAccepted += n;
      site.accepted += n;
      client.messages.accepted++;
      client.recipients.accepted += n;
      stats.bytesAccepted += bytes;
      for (let i = 0; i < n; i++) stats.domain(domains[i] as string).accepted++;
    } else if (code < 500) {
      stats.messagesDeferred++;
      stats.recipientsDeferred += n;
      site.deferred += n;
      client.messages.deferred++;
      client.recipients.deferred += n;
      for (let i = 0; i < n; i++) stats.domain(domains[i] as string).deferred++;
    } else {
      stats.messagesBounced++;
      stats.recipientsBounced += n;
      site.bounced += n;
      client.messages.bounced++;
      client.recipients.bounced += n;
      for (let i = 0; i < n; i++) stats.domain(domains[i] as string).bounced++;
    }
    this.resetTransaction();
    this.respond(STAGE_DATA, code, line, delay);
  }

  private startTls(hasArgument: boolean): boolean {
    const context = this.ctx.tls;
    if (context === null || this.tls) {
      this.syntaxError("502 5.5.1 Error: STARTTLS not offered");
      return false;
    }
    if (hasArgument) {
      this.syntaxError("501 5.5.4 Syntax: STARTTLS");
      return false;
    }
    if (this.mail) {
      this.out += "503 5.5.1 Error: STARTTLS inside a transaction\r\n";
      return false;
    }
    this.out += "220 2.0.0 Ready to start TLS\r\n";
    this.flush();
    // Anything pipelined after STARTTLS is discarded (it would be plaintext injected into the TLS session).
    this.carry = null;
    const raw = this.socket;
    raw.removeListener("error", this.onError);
    const secure = new TLSSocket(raw, { isServer: true, secureContext: context });
    secure.on("error", (err: NodeJS.ErrnoException) => {
      this.reason = `tls-error:${err.code ?? "unknown"}`;
      secure.destroy();
    });
    secure.on("data", this.onData);
    secure.once("secure", () => this.ctx.stats.connectionsTls++);
    this.socket = secure;
    this.tls = true;
    this.helo = false;
    this.resetTransaction();
    return true;
  }
}
