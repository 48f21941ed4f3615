import { setTimeout as sleep } from "node:timers/promises";
import { EXIT, type ExitCode } from "./exit-codes.ts";
import { LatencyHistogram } from "./histogram.ts";
import { Http1Pool, type HttpResponse } from "./http1-pool.ts";
import { backoffMs, classifyNetworkError, classifyStatus, errorGroupKey, type Outcome } from "./inject-errors.ts";
import { dueOffsetMs } from "./pacing.ts";

/** One request's worth of work: the body and how many recipients it carries. */
export interface Batch {
  body: Buffer;
  recipients: number;
}

export interface BatchSource {
  next(): Batch | undefined;
}

export interface RunConfig {
  url: URL;
  authorization?: string;
  concurrency: number;
  /** Recipients per second; undefined = as fast as the concurrency allows. */
  rate?: number;
  durationMs?: number;
  maxAttempts: number;
  requestTimeoutMs: number;
}

export interface FatalError {
  exitCode: ExitCode;
  reason: string;
  status?: number;
  body: string;
  bodyBytes: number;
  batch: number;
  attempts: number;
}

/** Distinct error texts kept; beyond this they are counted under one key so memory stays bounded. */
const MAX_ERROR_GROUPS = 100;
const OTHER_ERRORS = "(other error texts, not listed)";

export class RunStats {
  requestsSent = 0;
  requestsOk = 0;
  requestsFailed = 0;
  retries = 0;
  recipientsSent = 0;
  recipientsAccepted = 0;
  recipientsFailed = 0;
  readonly errors = new Map<string, number>();
  readonly latency = new LatencyHistogram();
  startedAt = 0;
  endedAt = 0;
  failedExitCode?: ExitCode;
  /** The first failed request the run went on after (a 500), for the error line. */
  firstFailure?: { reason: string; body: string };
  fatal?: FatalError;

  addError(text: string, count = 1): void {
    const key = this.errors.has(text) || this.errors.size < MAX_ERROR_GROUPS ? text : OTHER_ERRORS;
    this.errors.set(key, (this.errors.get(key) ?? 0) + count);
  }
}

type Response = HttpResponse;

interface InjectReply {
  success_count?: number;
  fail_count?: number;
  errors?: string[];
}

export class InjectRunner {
  readonly stats = new RunStats();
  private stopped = false;
  private anyResponse = false;
  private readonly pool: Http1Pool;
  private wake?: () => void;

  constructor(
    private readonly cfg: RunConfig,
    private readonly source: BatchSource,
  ) {
    const auth = cfg.authorization ? `Authorization: ${cfg.authorization}\r\n` : "";
    this.pool = new Http1Pool({
      host: cfg.url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(cfg.url.port || 80),
      path: cfg.url.pathname,
      extraHeaders: auth,
      maxConnections: cfg.concurrency,
      timeoutMs: cfg.requestTimeoutMs,
    });
  }

  /** Stops starting new requests; the ones in flight finish and are counted. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  async run(): Promise<RunStats> {
    this.stats.startedAt = performance.now();
    try {
      if (this.cfg.rate === undefined) await this.runClosedLoop();
      else await this.runOpenLoop(this.cfg.rate);
    } finally {
      this.stats.endedAt = performance.now();
      this.pool.destroy();
    }
    return this.stats;
  }

  private timeUp(): boolean {
    return this.cfg.durationMs !== undefined && performance.now() - this.stats.startedAt >= this.cfg.durationMs;
  }

  private nextBatch(): Batch | undefined {
    if (this.stopped || this.timeUp()) return undefined;
    return this.source.next();
  }

  private async runClosedLoop(): Promise<void> {
    const worker = async () => {
      for (let b = this.nextBatch(); b !== undefined; b = this.nextBatch()) await this.send(b);
    };
    await Promise.all(Array.from({ length: this.cfg.concurrency }, worker));
  }

  /** Sends each batch at its due time whatever the previous responses do, up to `concurrency` in flight. */
  private async runOpenLoop(rate: number): Promise<void> {
    const inFlight = new Set<Promise<void>>();
    let recipientsBefore = 0;
    for (let b = this.nextBatch(); b !== undefined; b = this.nextBatch()) {
      const due = this.stats.startedAt + dueOffsetMs(recipientsBefore, rate);
      const wait = due - performance.now();
      if (wait > 1) await this.interruptibleSleep(wait);
      if (this.stopped || this.timeUp()) break;
      while (inFlight.size >= this.cfg.concurrency) await Promise.race(inFlight);
      recipientsBefore += b.recipients;
      const p: Promise<void> = this.send(b).finally(() => inFlight.delete(p));
      inFlight.add(p);
    }
    await Promise.all(inFlight);
  }

  private interruptibleSleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    });
  }

  private async send(batch: Batch): Promise<void> {
    const s = this.stats;
    s.requestsSent++;
    s.recipientsSent += batch.recipients;
    let last: { outcome: Outcome; response?: Response } | undefined;
    for (let attempt = 0; attempt < this.cfg.maxAttempts; attempt++) {
      if (attempt > 0) {
        s.retries++;
        await sleep(backoffMs(attempt - 1, Math.random()));
        // Ctrl-C or another request's fatal error: give up this one quietly rather than report it as exhausted.
        if (this.stopped) {
          last = { outcome: { kind: "retry", reason: "stopped" }, response: last?.response };
          break;
        }
      }
      const started = performance.now();
      let response: Response;
      try {
        response = await this.pool.post(batch.body);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? "ECONNRESET";
        last = { outcome: classifyNetworkError(code, this.anyResponse) };
        if (last.outcome.kind === "retry") continue;
        break;
      }
      this.anyResponse = true;
      s.latency.recordMs(performance.now() - started);
      last = { outcome: classifyStatus(response.status), response };
      if (last.outcome.kind !== "retry") break;
    }
    this.account(batch, last);
  }

  private account(batch: Batch, last: { outcome: Outcome; response?: Response } | undefined): void {
    const s = this.stats;
    const outcome: Outcome = last?.outcome ?? { kind: "retry", reason: "stopped" };
    const body = last?.response?.body ?? "";
    if (outcome.kind === "ok") {
      s.requestsOk++;
      let reply: InjectReply = {};
      try {
        reply = JSON.parse(body) as InjectReply;
      } catch {
        s.addError(`unparseable 200 reply: ${body.slice(0, 200)}`);
      }
      const failCount = reply.fail_count ?? 0;
      s.recipientsAccepted += reply.success_count ?? 0;
      s.recipientsFailed += failCount;
      for (const e of reply.errors ?? []) s.addError(errorGroupKey(e));
      if (failCount > 0 && (reply.errors ?? []).length === 0)
        s.addError("rejected (kumod gave no error text)", failCount);
      return;
    }
    s.requestsFailed++;
    s.recipientsFailed += batch.recipients;
    const status = last?.response?.status;
    s.addError(status !== undefined ? `HTTP ${status}: ${body.trim().slice(0, 300)}` : `network: ${outcome.reason}`);
    if (outcome.kind === "failed") {
      s.failedExitCode ??= outcome.exitCode;
      s.firstFailure ??= { reason: outcome.reason, body };
      return;
    }
    if (outcome.kind === "retry" && outcome.reason === "stopped") return;
    // A fatal outcome, or retries exhausted (503 / connection lost): nothing later would succeed either.
    if (s.fatal === undefined) {
      const exitCode: ExitCode =
        outcome.kind === "fatal" ? outcome.exitCode : status === 503 ? EXIT.unavailable : EXIT.kumodUnreachable;
      s.fatal = {
        exitCode,
        reason: outcome.reason,
        status,
        body,
        bodyBytes: batch.body.length,
        batch: batch.recipients,
        attempts: outcome.kind === "retry" ? this.cfg.maxAttempts : 1,
      };
    }
    this.stop();
  }
}
