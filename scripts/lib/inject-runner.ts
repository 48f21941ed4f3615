import { setTimeout as sleep } from "node:timers/promises";
import { EXIT, type ExitCode } from "./exit-codes.ts";
import { LatencyHistogram } from "./histogram.ts";
import { Http1Pool, type HttpResponse, requestMayHaveArrived } from "./http1-pool.ts";
import { classifyNetworkError, classifyStatus, errorGroupKey, isRestartSign, type Outcome } from "./inject-errors.ts";
import { type Target, type TargetCounts, TargetSet, type Unavailable } from "./inject-targets.ts";
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
  /** One or more kumods, sent to in turn: the URL as the user gave it (for the summary) and its inject endpoint. */
  targets: { url: string; endpoint: URL }[];
  authorization?: string;
  concurrency: number;
  /** Recipients per second; undefined = as fast as the concurrency allows. */
  rate?: number;
  durationMs?: number;
  /** Attempts of one batch that get a 503 other than a restart's (load shedding, disk full) or time out. */
  maxAttempts: number;
  /** How long one batch keeps being retried while every target is unavailable (see isRestartSign). */
  restartBudgetMs: number;
  requestTimeoutMs: number;
}

export type TargetEvent = ({ kind: "down"; url: string } & Unavailable) | { kind: "up"; url: string; downMs: number };

export interface FatalError {
  exitCode: ExitCode;
  reason: string;
  status?: number;
  body: string;
  bodyBytes: number;
  batch: number;
  attempts: number;
  /** Given up after --restart-budget: how long the batch had been failing. */
  budgetWaitedMs?: number;
  /** The kumod of the last attempt (one of several in --url). */
  url?: string;
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
  /**
   * Recipients of batches given up after an attempt whose connection broke once the request was sent: kumod may have
   * spooled them or not (it returns no message ids and takes no idempotency key), so they are neither accepted nor
   * failed.
   */
  recipientsUnknown = 0;
  /**
   * Recipients accepted (200) on a retry after an earlier attempt of the same batch lost its connection once sent:
   * kumod may have spooled that attempt too, so the sink may see them twice. Counted once in `accepted`.
   */
  recipientsMaybeDuplicated = 0;
  readonly errors = new Map<string, number>();
  readonly latency = new LatencyHistogram();
  startedAt = 0;
  endedAt = 0;
  failedExitCode?: ExitCode;
  /** The first failed request the run went on after (a 500), for the error line. */
  firstFailure?: { reason: string; body: string };
  fatal?: FatalError;
  /** Per target, in the order given. */
  targets: TargetCounts[] = [];

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

/** Where one attempt of a batch ended. */
interface Attempt {
  outcome: Outcome;
  response?: Response;
  /** For a retry outcome: a pod restarting (budget) rather than overload or a timeout (--retries). */
  restart?: boolean;
  target?: Target;
  /** The network error of an attempt that got no answer. */
  error?: unknown;
  /** Set on the last attempt when the batch was given up after --restart-budget: how long it had been failing. */
  budgetWaitedMs?: number;
}

export class InjectRunner {
  readonly stats = new RunStats();
  private stopped = false;
  private readonly targetSet: TargetSet;
  private readonly pools: Http1Pool[];
  private wake?: () => void;
  /** A target went down or came back: for the "waiting for kumod" lines. */
  onTargetChange?: (event: TargetEvent) => void;

  constructor(
    private readonly cfg: RunConfig,
    private readonly source: BatchSource,
  ) {
    const auth = cfg.authorization ? `Authorization: ${cfg.authorization}\r\n` : "";
    this.targetSet = new TargetSet(cfg.targets.map((t) => t.url));
    this.stats.targets = this.targetSet.targets.map((t) => t.counts);
    this.pools = cfg.targets.map(
      ({ endpoint }) =>
        new Http1Pool({
          host: endpoint.hostname.replace(/^\[|\]$/g, ""),
          port: Number(endpoint.port || 80),
          path: endpoint.pathname,
          extraHeaders: auth,
          maxConnections: cfg.concurrency,
          timeoutMs: cfg.requestTimeoutMs,
        }),
    );
  }

  /** Stops starting new requests; the ones in flight finish and are counted. */
  stop(): void {
    this.stopped = true;
    this.wake?.();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** The targets unavailable right now, since when (performance.now() clock) and why. */
  downTargets(): ({ url: string; since: number } & Unavailable)[] {
    return this.targetSet.downTargets();
  }

  async run(): Promise<RunStats> {
    this.stats.startedAt = performance.now();
    try {
      if (this.cfg.rate === undefined) await this.runClosedLoop();
      else await this.runOpenLoop(this.cfg.rate);
    } finally {
      this.stats.endedAt = performance.now();
      for (const p of this.pools) p.destroy();
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

  /**
   * Sends one batch until it gets an answer that settles it. A 503 or a lost connection sends it again, to the next
   * target that is not backing off (at once) or, when every target is, to the first one due (after its backoff).
   * Restart signs are retried for --restart-budget from the batch's first failure, other 503s and timeouts for
   * --retries attempts; the last attempt goes out when the budget ends.
   */
  private async send(batch: Batch): Promise<void> {
    const s = this.stats;
    s.requestsSent++;
    s.recipientsSent += batch.recipients;
    let last: Attempt | undefined;
    let attempts = 0;
    let otherFailures = 0;
    let firstFailureAt: number | undefined;
    // Whether an attempt that got no answer may still have reached kumod (and been spooled).
    let mayHaveArrived = false;
    for (;;) {
      const picked = this.targetSet.pick(performance.now());
      if (picked.waitMs > 0) {
        const left =
          firstFailureAt === undefined ? picked.waitMs : firstFailureAt + this.cfg.restartBudgetMs - performance.now();
        await sleep(Math.max(0, Math.min(picked.waitMs, left)));
      }
      // Ctrl-C or another request's fatal error: give up this one quietly rather than report it as exhausted.
      if (attempts > 0 && this.stopped) {
        last = { outcome: { kind: "retry", reason: "stopped" }, response: last?.response };
        break;
      }
      if (attempts > 0) s.retries++;
      attempts++;
      const target = picked.target;
      last = await this.attempt(target, batch);
      if (last.response === undefined && requestMayHaveArrived(last.error)) mayHaveArrived = true;
      if (last.outcome.kind !== "retry") break;
      const now = performance.now();
      firstFailureAt ??= now;
      if (!last.restart) otherFailures++;
      if (otherFailures >= this.cfg.maxAttempts) break;
      if (now - firstFailureAt >= this.cfg.restartBudgetMs) {
        last.budgetWaitedMs = now - firstFailureAt;
        break;
      }
    }
    this.account(batch, last, attempts, mayHaveArrived);
  }

  /** One attempt of `batch` at `target`, and what it tells about the target. */
  private async attempt(target: Target, batch: Batch): Promise<Attempt> {
    const counts = target.counts;
    counts.requests.sent++;
    const started = performance.now();
    let response: Response;
    try {
      response = await (this.pools[target.index] as Http1Pool).post(batch.body);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? "ECONNRESET";
      const outcome = classifyNetworkError(code, target.answered);
      if (outcome.kind === "retry") this.targetDown(target, code, isRestartSign(undefined, code));
      return { outcome, restart: isRestartSign(undefined, code), error: err, target };
    }
    target.answered = true;
    this.stats.latency.recordMs(performance.now() - started);
    const outcome = classifyStatus(response.status);
    if (outcome.kind === "retry") {
      const restart = isRestartSign(response.status, response.body);
      this.targetDown(target, `${response.status} ${response.body.trim().slice(0, 80)}`, restart);
      return { outcome, response, restart, target };
    }
    const downMs = this.targetSet.markUp(target, performance.now());
    if (downMs !== undefined) this.onTargetChange?.({ kind: "up", url: counts.url, downMs });
    return { outcome, response, target };
  }

  private targetDown(target: Target, reason: string, restart: boolean): void {
    target.counts.requests.unavailable++;
    if (this.targetSet.markDown(target, { reason, restart }, performance.now(), Math.random())) {
      this.onTargetChange?.({ kind: "down", url: target.counts.url, reason, restart });
    }
  }

  private account(batch: Batch, last: Attempt | undefined, attempts: number, mayHaveArrived: boolean): void {
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
      const accepted = reply.success_count ?? 0;
      s.recipientsAccepted += accepted;
      s.recipientsFailed += failCount;
      const t = last?.target?.counts;
      if (t) {
        t.requests.ok++;
        t.recipients.accepted += accepted;
        t.recipients.failed += failCount;
      }
      if (mayHaveArrived) s.recipientsMaybeDuplicated += batch.recipients;
      for (const e of reply.errors ?? []) s.addError(errorGroupKey(e));
      if (failCount > 0 && (reply.errors ?? []).length === 0)
        s.addError("rejected (kumod gave no error text)", failCount);
      return;
    }
    s.requestsFailed++;
    if (mayHaveArrived) s.recipientsUnknown += batch.recipients;
    else s.recipientsFailed += batch.recipients;
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
        attempts,
        budgetWaitedMs: last?.budgetWaitedMs,
        url: last?.target?.counts.url,
      };
    }
    this.stop();
  }
}
