import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import cliProgress from "cli-progress";
import { runMain, usageError } from "./lib/cli.ts";
import { loadToolEnv, REPO_ROOT } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import {
  DEFAULT_DOMAINS,
  DEFAULT_RESTART_BUDGET,
  DEFAULT_TIMEOUT,
  type InjectOptions,
  parseInjectArgs,
} from "./lib/inject-args.ts";
import { explain, explainHttpError } from "./lib/inject-errors.ts";
import { runInCluster } from "./lib/inject-in-cluster.ts";
import { IN_CLUSTER_KUMOD_URL, inClusterConflict, podArgs, splitInCluster } from "./lib/inject-job.ts";
import { bodyFrame, KUMOD_VERSION, requestTemplate, validatePayload } from "./lib/inject-payload.ts";
import { type BatchSource, InjectRunner, type RunStats } from "./lib/inject-runner.ts";
import { FileSource, GeneratedSource } from "./lib/inject-sources.ts";
import { buildSummary, formatSummary, type Summary, verifyResult } from "./lib/inject-summary.ts";
import { parseJsonWithLocation } from "./lib/json-location.ts";
import { formatDuration } from "./lib/pacing.ts";
import { RecipientGenerator } from "./lib/recipients.ts";
import {
  getSinkStats,
  SinkBadPortError,
  type SinkStats,
  SinkUnreachableError,
  settled,
  sinkDelta,
} from "./lib/sink-api.ts";
import { apiBaseUrl, KUMOD_API, SINK_API, sinkBadPortError } from "./lib/urls.ts";

const DEFAULT_PAYLOAD = "sample_http_inject_payload.json";

const HELP = `Usage: npm run inject -- [options]

Injects mail into kumod with POST /api/inject/v1 (kumod ${KUMOD_VERSION}) and prints what happened.
Without --count it sends the payload file once, recipients as written. With --count it replaces the
file's recipients with N generated distinct addresses (<local-part><n>@<domain>), --batch per request.

Connection (defaults come from the environment, then the repo's .env written by \`npm run seed\`):
  --url URL[,URL...]      kumod HTTP API            [KUMO_HTTP_URL, default http://localhost:8000]
                          several, comma-separated: batches go to each in turn, and a batch whose kumod
                          is restarting goes to the next one (the summary counts per kumod)
  -u, --user USER         basic-auth user           [KUMO_HTTP_USER]
  -p, --password PASS     basic-auth password       [KUMO_HTTP_PASSWORD]
                          (no credentials: none sent; a loopback port-forward is a trusted peer)
Payload:
  --payload FILE          request JSON              [default ${DEFAULT_PAYLOAD} at the repo root]
                          checked before sending: top level envelope_sender, content, recipients,
                          substitutions, template_dialect (Jinja|Static|Handlebars), deferred_spool,
                          deferred_generation, trace_headers (all four of received_header,
                          supplemental_header, header_name, include_meta_names); content is a MIME string
                          or {text_body, html_body, amp_html_body, headers, from, reply_to, subject,
                          attachments[{content_type, data, base64, file_name, content_id}]}; recipients
                          are {email, name, substitutions, metadata}. Anything else: kumod answers 422.
  --deferred-spool        set deferred_spool: spool only on the first transient failure (lost on crash)
  --deferred-generation   set deferred_generation: kumod builds the messages later (success_count is 0)
Load:
  -n, --count N           generate N recipients (1_000_000 style underscores allowed)
  --domains LIST          domains for generated recipients, optional integer weights
                          e.g. example.com,example.net:3 (3 of every 4 to example.net) [default ${DEFAULT_DOMAINS}]
  --local-part PREFIX     local part prefix of generated recipients [default user]
  -b, --batch B           recipients per request [default 100; kumod's body limit is 2 MiB]
  -c, --concurrency C     requests in flight at most [default 8]
  -r, --rate R            recipients per second, open-loop (requests leave on schedule, not after the
                          previous reply) [default: as fast as --concurrency allows]
  -d, --duration T        stop starting requests after T (30s, 2m, 1m30s); without --count generate
                          recipients until then
  --restart-budget T      how long a batch is retried while kumod restarts (503 "shutting down" or "waiting
                          for spool startup", connection refused or lost): one pod's graceful stop, restart and
                          spool start [default ${DEFAULT_RESTART_BUDGET}]
  --retries N             retries of another 503 (load shedding, disk full) or a timeout, exponential
                          backoff [default 4]
  --timeout T             give up on a request kumod has not answered after T [default ${DEFAULT_TIMEOUT}]
Output:
  --json                  print the summary as one JSON object on stdout (exit_code and error say how it
                          ended; a run that cannot start prints {exit_code, error})
  --no-progress           no progress bar (it is only drawn on a terminal anyway)
In the cluster:
  --in-cluster            run this injector as a Kubernetes Job in the namespace [KUMOMTA_NAMESPACE, default the
                          overlay's], with the same options, its output streamed here: no port-forward, and the
                          kumod Service (${IN_CLUSTER_KUMOD_URL}) spreads the load over every ready kumod pod.
                          Runs the console's image with credentials from the kumo-http-auth Secret; --verify
                          reads the sink Service. Not with --url, --sink-url, --user, --password or --payload.
                          Ctrl-C stops the injector in the pod (it prints its summary), a second one deletes
                          the Job at once; the Job is deleted when it ends. Exit codes are the injector's, or
                          13/14/15/19 when kubectl, the cluster, the namespace or the Job fail.
Verify:
  --verify                before injecting, snapshot the sink's /api/stats; afterwards wait until every
                          recipient kumod accepted is delivered or bounced at the sink, then report
                          delivered / bounced / deferral attempts
  --verify-timeout T      give up waiting after T [default 2m]
  --sink-url URL          sink HTTP API [SINK_HTTP_URL, default http://localhost:8025]
  -h, --help              this text

Examples:
  npm run inject                                   # one message, as in ${DEFAULT_PAYLOAD}
  npm run inject -- --verify                       # ... and wait until the sink has it
  npm run inject -- --count 100000 --batch 100 --concurrency 16
  npm run inject -- --count 60000 --rate 1000 --domains example.com,example.net:2 --verify
  npm run inject -- --duration 5m --rate 500 --json > run.json
  npm run inject -- --payload my.json --user alice --password secret
  npm run inject -- --in-cluster --count 20000 --rate 1000 --verify

The summary: requests ok/failed/retried, recipients accepted/failed, kumod's error texts grouped, request
latency p50/p95/p99 (send to response), achieved rate, and per kumod when --url lists several.
400/401/413/415/422 stop the run at once (every later request would fail the same way); a 500 is counted as a
failed request and the run goes on.
Accepted counts only kumod's 200 replies (success_count). A request whose connection broke after it was sent
may have been spooled (kumod takes no idempotency key): it is resent, and its recipients are reported as
"maybe twice" if the resend is accepted, or as "unknown" (neither accepted nor failed) if the batch is given up.
While kumod restarts, stderr says which kumod is unavailable, why, and for how long.
Ctrl-C stops sending, waits for the requests in flight and prints the summary of what was sent.

Exit codes:
${exitCodeTable([
  EXIT.ok,
  EXIT.internal,
  EXIT.usage,
  EXIT.payload,
  EXIT.kumodUnreachable,
  EXIT.unauthorized,
  EXIT.unprocessable,
  EXIT.tooLarge,
  EXIT.unavailable,
  EXIT.recipientsRejected,
  EXIT.httpError,
  EXIT.sinkUnreachable,
  EXIT.verifyIncomplete,
  EXIT.kubectlMissing,
  EXIT.clusterUnreachable,
  EXIT.namespaceMissing,
  EXIT.commandFailed,
  EXIT.interrupted,
])}
`;

type Obj = Record<string, unknown>;

function loadPayload(opts: InjectOptions): { payload: Obj; path: string } {
  const base = process.env.INIT_CWD ?? process.cwd();
  const path = opts.payload === undefined ? resolve(REPO_ROOT, DEFAULT_PAYLOAD) : resolve(base, opts.payload);
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    throw new CliError(EXIT.payload, `cannot read payload file ${path}: ${(err as Error).message}`);
  }
  const parsed = parseJsonWithLocation(text);
  if (!parsed.ok) {
    const e = parsed.error;
    throw new CliError(
      EXIT.payload,
      `payload file ${path} is not valid JSON: line ${e.line}, column ${e.column}: ${e.message}`,
      "Nothing was sent. Fix the file and run again.",
    );
  }
  const issues = validatePayload(parsed.value, opts.count !== undefined || opts.durationMs !== undefined);
  if (issues.length > 0) {
    const list = issues.map((i) => `  ${i.path || "(top level)"}: ${i.message}`).join("\n");
    throw new CliError(
      EXIT.payload,
      `payload file ${path} would be rejected by kumod ${KUMOD_VERSION}:\n${list}`,
      "Nothing was sent. See `npm run inject -- --help` for the accepted fields.",
    );
  }
  return { payload: parsed.value as Obj, path };
}

function buildSource(opts: InjectOptions, payload: Obj): { source: BatchSource; total?: number } {
  const template = requestTemplate(payload, opts);
  const fileRecipients = Array.isArray(payload.recipients) ? (payload.recipients as unknown[]) : [];
  const frame = bodyFrame(template, fileRecipients[0]);
  if (opts.count !== undefined || opts.durationMs !== undefined) {
    const limit = opts.count ?? Number.POSITIVE_INFINITY;
    const gen = new RecipientGenerator(opts.domains, opts.localPart, limit);
    return { source: new GeneratedSource(frame, gen, opts.batch), total: opts.count };
  }
  return { source: new FileSource(frame, fileRecipients, opts.batch), total: fileRecipients.length };
}

/** Lines about kumods going away and coming back, on stderr; over the progress bar's line when there is one. */
function note(line: string): void {
  process.stderr.write(`${process.stderr.isTTY ? "\r\u001b[K" : ""}${line}\n`);
}

/** A duration the way it is written on the command line: 2m, 90s, 1500ms. */
function asFlag(ms: number): string {
  if (ms === 0) return "0";
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/** Says while the run waits which kumod is unavailable, why and for how long; returns the function that stops it. */
function reportRestarts(runner: InjectRunner, several: boolean, budget: string, retries: number): () => void {
  const limit = (restart: boolean) =>
    restart ? ` (retried for up to --restart-budget ${budget})` : ` (retried up to --retries ${retries} times)`;
  // A line when a kumod has been away for 5 s, then every 5 s while it stays away.
  const every = 5000;
  const lastNote = new Map<string, number>();
  const timer = setInterval(() => {
    const now = performance.now();
    for (const d of runner.downTargets()) {
      if (now - Math.max(d.since, lastNote.get(d.url) ?? 0) < every) continue;
      lastNote.set(d.url, now);
      note(`still waiting for kumod ${d.url}: ${d.reason} for ${formatDuration(now - d.since)}${limit(d.restart)}`);
    }
  }, 500);
  timer.unref();
  runner.onTargetChange = (e) => {
    if (e.kind === "up") note(`kumod ${e.url} answers again after ${formatDuration(e.downMs)}`);
    else {
      const meanwhile = several ? "; the other kumods take the batches meanwhile" : "";
      note(
        `waiting for kumod ${e.url}: ${e.reason}${e.restart ? " (restarting?)" : ""}${meanwhile}${limit(e.restart)}`,
      );
    }
  };
  return () => clearInterval(timer);
}

function injectEndpoint(base: string): URL {
  return new URL("/api/inject/v1", apiBaseUrl(base, KUMOD_API));
}

function basicAuth(user?: string, password?: string): string | undefined {
  if (user === undefined) return undefined;
  return `Basic ${Buffer.from(`${user}:${password ?? ""}`).toString("base64")}`;
}

/** A progress bar on stderr, only on a terminal, only once the run lasts more than a moment. */
function startProgress(opts: InjectOptions, label: string, total: number | undefined, value: () => number) {
  if (!opts.progress || !process.stderr.isTTY) return () => {};
  let bar: cliProgress.SingleBar | undefined;
  const t0 = Date.now();
  const timer = setInterval(() => {
    if (!bar) {
      if (Date.now() - t0 < 500) return;
      const format =
        total === undefined
          ? `${label} {value} | {rate}/s | {elapsed}s`
          : `${label} [{bar}] {percentage}% | {value}/{total} | {rate}/s | ETA {eta_formatted}`;
      bar = new cliProgress.SingleBar({ format, stream: process.stderr, hideCursor: true, clearOnComplete: true });
      bar.start(total ?? 0, 0, { rate: 0, elapsed: 0 });
    }
    const v = value();
    const secs = (Date.now() - t0) / 1000;
    bar.update(v, { rate: Math.round(v / Math.max(secs, 0.001)), elapsed: Math.round(secs) });
  }, 200);
  return () => {
    clearInterval(timer);
    bar?.stop();
  };
}

async function snapshotSink(url: string): Promise<SinkStats> {
  try {
    return await getSinkStats(url);
  } catch (err) {
    if (err instanceof SinkBadPortError) throw sinkBadPortError(err);
    if (err instanceof SinkUnreachableError) {
      throw new CliError(
        EXIT.sinkUnreachable,
        `--verify: ${err.message}`,
        "Is `tilt up` running with its port-forward to sink:8025? Set SINK_HTTP_URL or --sink-url otherwise. Nothing was sent.",
      );
    }
    throw new CliError(EXIT.sinkUnreachable, `--verify: ${(err as Error).message}`);
  }
}

async function waitForSink(
  opts: InjectOptions,
  url: string,
  before: SinkStats,
  expected: number,
  interrupted: () => boolean,
) {
  const start = Date.now();
  let last = sinkDelta(before, before);
  let unreachable: string | undefined;
  const stop = startProgress(opts, "verify ", expected, () => Math.min(settled(last), expected));
  try {
    while (!interrupted()) {
      try {
        last = sinkDelta(before, await getSinkStats(url));
        unreachable = undefined;
      } catch (err) {
        unreachable = (err as Error).message;
      }
      if (settled(last) >= expected || Date.now() - start >= opts.verifyTimeoutMs) break;
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    stop();
  }
  return { result: verifyResult(url, expected, last, Date.now() - start, opts.verifyTimeoutMs), unreachable };
}

function finalExitCode(
  sum: Summary,
  fatal: ExitCode | undefined,
  failed: ExitCode | undefined,
  sinkLost: boolean,
): ExitCode {
  if (sum.interrupted) return EXIT.interrupted;
  if (fatal !== undefined) return fatal;
  if (sum.verify && !sum.verify.complete) return sinkLost ? EXIT.sinkUnreachable : EXIT.verifyIncomplete;
  if (failed !== undefined) return failed;
  if (sum.recipients.failed > 0) return EXIT.recipientsRejected;
  return EXIT.ok;
}

async function main(commandLine: string[]): Promise<ExitCode> {
  const { inCluster, argv } = splitInCluster(commandLine);
  let opts: InjectOptions;
  try {
    opts = parseInjectArgs(argv);
  } catch (err) {
    throw usageError((err as Error).message, "inject");
  }
  if (opts.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  const env = loadToolEnv();
  if (inCluster) {
    const conflict = inClusterConflict(opts);
    if (conflict !== undefined) throw usageError(conflict, "inject");
    return runInCluster(env.namespace, podArgs(argv, opts.verify), opts.json);
  }
  const urls = opts.urls ?? env.kumoUrl.split(",").map((u) => u.trim());
  const kumoUrl = urls.join(",");
  const sinkUrl = opts.sinkUrl ?? env.sinkUrl;
  const user = opts.user ?? env.kumoUser;
  const password = opts.password ?? env.kumoPassword;
  const targets = urls.map((url) => ({ url, endpoint: injectEndpoint(url) }));
  if (opts.verify) apiBaseUrl(sinkUrl, SINK_API);
  const { payload } = loadPayload(opts);
  const { source, total } = buildSource(opts, payload);
  const before = opts.verify ? await snapshotSink(sinkUrl) : undefined;

  const runner = new InjectRunner(
    {
      targets,
      authorization: basicAuth(user, password),
      concurrency: opts.concurrency,
      rate: opts.rate,
      durationMs: opts.durationMs,
      maxAttempts: opts.retries + 1,
      restartBudgetMs: opts.restartBudgetMs,
      requestTimeoutMs: opts.timeoutMs,
    },
    source,
  );
  let interrupted = false;
  process.on("SIGINT", () => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
    process.stderr.write("\nstopping: waiting for requests in flight (Ctrl-C again to quit now)\n");
    runner.stop();
  });
  const budget = asFlag(opts.restartBudgetMs);
  const stopReports = reportRestarts(runner, targets.length > 1, budget, opts.retries);
  const stopProgress = startProgress(opts, "inject ", total, () => runner.stats.recipientsSent);
  const stats = await runner.run().finally(() => {
    stopProgress();
    stopReports();
  });

  const summary = buildSummary(stats, {
    url: kumoUrl,
    exitCode: EXIT.ok,
    interrupted,
    targetRate: opts.rate,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
  });
  if (stats.fatal) {
    const f = stats.fatal;
    summary.error = explain(f.exitCode, f.reason, {
      url: f.url ?? kumoUrl,
      user,
      envFile: env.envFile,
      batch: f.batch,
      bodyBytes: f.bodyBytes,
      body: f.body,
      attempts: f.attempts,
      timeoutMs: opts.timeoutMs,
      budget: f.budgetWaitedMs === undefined ? undefined : { waitedMs: f.budgetWaitedMs, text: budget },
    });
  }
  let sinkLost = false;
  if (before && !stats.fatal && !interrupted) {
    const expected = opts.deferredGeneration
      ? stats.recipientsSent - stats.recipientsFailed - stats.recipientsUnknown
      : stats.recipientsAccepted;
    const { result, unreachable } = await waitForSink(opts, sinkUrl, before, expected, () => interrupted);
    summary.verify = result;
    if (!result.complete) {
      summary.error = unreachable
        ? { message: `--verify: ${unreachable}`, hint: "The sink stopped answering while waiting." }
        : {
            message: `--verify: ${expected - result.delivered - result.bounced} of ${expected} accepted recipients did not reach the sink within ${result.timeout_s} s`,
            hint:
              "Check `npm run status` (kumod queues, TSA suspensions) and the sink scenario; " +
              "deferred mail is retried by kumod, a longer --verify-timeout may be enough.",
          };
    }
    sinkLost = unreachable !== undefined;
    // Ctrl-C while waiting for the sink.
    summary.interrupted = interrupted;
  }
  const code = finalExitCode(summary, stats.fatal?.exitCode, stats.failedExitCode, sinkLost);
  summary.exit_code = code;
  if (code !== EXIT.ok) summary.error ??= outcomeError(code, summary, stats, kumoUrl);
  if (!opts.json) process.stdout.write(`${formatSummary(summary)}\n`);
  // runMain prints the error lines, and with --json the summary carrying them.
  if (summary.error) throw new CliError(code, summary.error.message, summary.error.hint, { ...summary });
  if (opts.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return code;
}

/** The error line of a run that ended without a fatal answer: Ctrl-C, failed requests, rejected recipients. */
function outcomeError(code: ExitCode, sum: Summary, stats: RunStats, url: string): { message: string; hint: string } {
  const { recipients, requests } = sum;
  if (code === EXIT.interrupted) {
    return {
      message: `interrupted (Ctrl-C) after sending ${recipients.sent} recipients, ${recipients.accepted} accepted`,
      hint: "Nothing more was sent; the summary shows what kumod accepted.",
    };
  }
  if (code === EXIT.recipientsRejected) {
    return {
      message: `kumod rejected ${recipients.failed} of ${recipients.sent} recipients (its reasons are grouped in the summary)`,
      hint: "The recipients or the envelope_sender did not pass kumod's policy; kumod's texts above say which.",
    };
  }
  const first = stats.firstFailure;
  const detail = first
    ? explainHttpError(first.reason, first.body, url)
    : { message: `the run ended with exit code ${code}`, hint: "See the summary above." };
  return { message: `${requests.failed} of ${requests.sent} requests failed: ${detail.message}`, hint: detail.hint };
}

runMain(() => main(process.argv.slice(2)));
