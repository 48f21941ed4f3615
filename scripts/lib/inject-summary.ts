import type { ExitCode } from "./exit-codes.ts";
import type { RunStats } from "./inject-runner.ts";
import type { TargetCounts } from "./inject-targets.ts";
import { formatDuration } from "./pacing.ts";
import type { SinkDelta } from "./sink-api.ts";

export interface VerifyResult {
  sink_url: string;
  expected: number;
  delivered: number;
  bounced: number;
  deferral_attempts: number;
  complete: boolean;
  waited_s: number;
  timeout_s: number;
}

export interface Summary {
  url: string;
  exit_code: ExitCode;
  interrupted: boolean;
  requests: { sent: number; ok: number; failed: number; retries: number };
  /**
   * sent = accepted + failed + unknown. accepted: success_count of 200 replies; failed: fail_count of 200 replies and
   * batches given up without ever reaching kumod; unknown: batches given up after a connection broke once the request
   * was sent (kumod may have spooled them); maybe_duplicated: accepted on a retry after such a broken attempt (kumod
   * may hold them twice; counted once in accepted).
   */
  recipients: { sent: number; accepted: number; failed: number; unknown: number; maybe_duplicated: number };
  /** Per kumod given in --url, in that order. */
  targets: TargetCounts[];
  errors: { text: string; count: number }[];
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  elapsed_s: number;
  rate: { recipients_per_s: number; requests_per_s: number; target_recipients_per_s: number | null };
  verify: VerifyResult | null;
  error: { message: string; hint: string } | null;
  max_rss_bytes: number;
}

const round = (x: number, digits = 1) => Math.round(x * 10 ** digits) / 10 ** digits;

export function buildSummary(
  s: RunStats,
  info: { url: string; exitCode: ExitCode; interrupted: boolean; targetRate?: number; maxRssBytes: number },
): Summary {
  const elapsedS = Math.max((s.endedAt - s.startedAt) / 1000, 1e-6);
  return {
    url: info.url,
    exit_code: info.exitCode,
    interrupted: info.interrupted,
    requests: { sent: s.requestsSent, ok: s.requestsOk, failed: s.requestsFailed, retries: s.retries },
    recipients: {
      sent: s.recipientsSent,
      accepted: s.recipientsAccepted,
      failed: s.recipientsFailed,
      unknown: s.recipientsUnknown,
      maybe_duplicated: s.recipientsMaybeDuplicated,
    },
    targets: s.targets,
    errors: [...s.errors.entries()].map(([text, count]) => ({ text, count })).sort((a, b) => b.count - a.count),
    latency_ms: {
      p50: round(s.latency.percentileMs(50), 2),
      p95: round(s.latency.percentileMs(95), 2),
      p99: round(s.latency.percentileMs(99), 2),
      max: round(s.latency.maxMs(), 2),
    },
    elapsed_s: round(elapsedS, 3),
    rate: {
      recipients_per_s: round(s.recipientsSent / elapsedS),
      requests_per_s: round(s.requestsSent / elapsedS),
      target_recipients_per_s: info.targetRate ?? null,
    },
    verify: null,
    error: null,
    max_rss_bytes: info.maxRssBytes,
  };
}

export function verifyResult(
  sinkUrl: string,
  expected: number,
  d: SinkDelta,
  waitedMs: number,
  timeoutMs: number,
): VerifyResult {
  return {
    sink_url: sinkUrl,
    expected,
    delivered: d.delivered,
    bounced: d.bounced,
    deferral_attempts: d.deferralAttempts,
    complete: d.delivered + d.bounced >= expected,
    waited_s: round(waitedMs / 1000, 2),
    timeout_s: round(timeoutMs / 1000, 2),
  };
}

const n = (x: number) => x.toLocaleString("en-US");

const plural = (x: number, word: string) => `${n(x)} ${word}${x === 1 ? "" : "s"}`;

export function formatSummary(sum: Summary): string {
  const lines: string[] = [];
  const r = sum.recipients;
  // A run where every recipient failed must not read like a successful one ("sent ... at 10 recipients/s").
  const nothingAccepted = r.sent > 0 && r.failed + r.unknown === r.sent;
  const head = sum.interrupted ? "interrupted after" : nothingAccepted ? "nothing accepted:" : "sent";
  const what = `${plural(r.sent, "recipient")} in ${plural(sum.requests.sent, "request")}`;
  lines.push(
    `kumod ${sum.url}: ${head} ${what}${nothingAccepted && !sum.interrupted ? " failed" : ""}, ${formatDuration(sum.elapsed_s * 1000)}`,
  );
  lines.push(
    `  requests    ${n(sum.requests.ok)} ok, ${n(sum.requests.failed)} failed, ${n(sum.requests.retries)} retries`,
  );
  const unknown = r.unknown > 0 ? `, ${n(r.unknown)} unknown (connection lost after sending: kumod may have them)` : "";
  const dup =
    r.maybe_duplicated > 0
      ? `, ${n(r.maybe_duplicated)} of the accepted maybe twice (resent after a lost connection)`
      : "";
  lines.push(`  recipients  ${n(r.accepted)} accepted, ${n(r.failed)} failed${unknown}${dup}`);
  if (sum.targets.length > 1) {
    lines.push("  per kumod:");
    for (const t of sum.targets) {
      const down = t.requests.unavailable > 0 ? `, ${n(t.requests.unavailable)} unavailable (503 or no answer)` : "";
      lines.push(
        `    ${t.url}  ${n(t.recipients.accepted)} accepted, ${n(t.recipients.failed)} failed; ${plural(t.requests.ok, "request")} ok${down}`,
      );
    }
  }
  const l = sum.latency_ms;
  // No answer at all (refused, timed out) leaves no latency to show.
  if (l.max > 0) lines.push(`  latency     p50 ${l.p50} ms, p95 ${l.p95} ms, p99 ${l.p99} ms, max ${l.max} ms`);
  const target = sum.rate.target_recipients_per_s === null ? "" : ` (target ${n(sum.rate.target_recipients_per_s)}/s)`;
  if (!nothingAccepted)
    lines.push(
      `  rate        ${n(sum.rate.recipients_per_s)} recipients/s, ${n(sum.rate.requests_per_s)} requests/s${target}`,
    );
  if (sum.errors.length > 0) {
    lines.push("  errors (grouped):");
    for (const e of sum.errors.slice(0, 20)) lines.push(`    ${String(n(e.count)).padStart(9)}  ${e.text}`);
    if (sum.errors.length > 20) lines.push(`    ... ${sum.errors.length - 20} more (see --json)`);
  }
  const v = sum.verify;
  if (v) {
    const state = v.complete ? "all settled" : `INCOMPLETE after ${v.waited_s} s (timeout ${v.timeout_s} s)`;
    lines.push(
      `verify (sink ${v.sink_url}): ${n(v.delivered + v.bounced)} of ${n(v.expected)} accepted recipients ${state}`,
    );
    lines.push(`  delivered ${n(v.delivered)}, bounced ${n(v.bounced)}, deferral attempts ${n(v.deferral_attempts)}`);
  }
  return lines.join("\n");
}
