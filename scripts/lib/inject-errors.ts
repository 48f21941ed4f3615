import { EXIT, type ExitCode } from "./exit-codes.ts";
import { formatDuration } from "./pacing.ts";

/** How the injector reacts to one HTTP outcome from kumod (documented in kumomta.md §2). */
export type Outcome =
  | { kind: "ok" }
  | { kind: "retry"; reason: string }
  | { kind: "fatal"; exitCode: ExitCode; reason: string }
  | { kind: "failed"; exitCode: ExitCode; reason: string };

/**
 * Network errors are retried once kumod has answered at least once in this run (a pod restarting mid-load);
 * before that, refusing is what a missing port-forward looks like and waiting would only hide it.
 */
export function classifyNetworkError(code: string, anyResponseSeen: boolean): Outcome {
  if (anyResponseSeen && code !== "ENOTFOUND") return { kind: "retry", reason: code };
  return { kind: "fatal", exitCode: EXIT.kumodUnreachable, reason: code };
}

/**
 * 503 is kumod saying "not now" (shutting down, load shedding, spool starting): retried with backoff. 400, 401,
 * 413, 415 and 422 would fail identically for every following request, so the run stops at the first one; so do
 * 404 and 405, which mean the URL is not kumod's inject API at all (another server on that port).
 * Other statuses (500: bad envelope_sender, auth hook raised) are counted as failed requests and the run goes on.
 */
export function classifyStatus(status: number): Outcome {
  if (status === 200) return { kind: "ok" };
  if (status === 503) return { kind: "retry", reason: "503" };
  if (status === 401) return { kind: "fatal", exitCode: EXIT.unauthorized, reason: "401" };
  if (status === 422) return { kind: "fatal", exitCode: EXIT.unprocessable, reason: "422" };
  if (status === 413) return { kind: "fatal", exitCode: EXIT.tooLarge, reason: "413" };
  if ([400, 404, 405, 415].includes(status)) return { kind: "fatal", exitCode: EXIT.httpError, reason: String(status) };
  return { kind: "failed", exitCode: EXIT.httpError, reason: String(status) };
}

/** Exponential backoff with half jitter: up to 200 ms, 400 ms, 800 ms ... capped at `capMs` (5 s). */
export function backoffMs(attempt: number, random: number, capMs = 5000): number {
  const ceiling = Math.min(capMs, 200 * 2 ** attempt);
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}

/**
 * Backoff cap while a target restarts: a probe of a restarting pod costs one refused connection or one 503 (neither
 * accepts anything), so probing every 2 s at most notices the restarted pod within 2 s.
 */
export const RESTART_BACKOFF_CAP_MS = 2000;

/**
 * Whether a failed attempt looks like a kumod pod restarting, which the run rides out for --restart-budget: a 503
 * "shutting down" (graceful stop, about 3 s) or "waiting for spool startup" (the new pod), or a connection refused or
 * broken (the pod is gone, or its port-forward died with it). Other 503s (load shedding, disk too full) and
 * timeouts say kumod is overloaded or stuck: those keep the --retries limit.
 */
export function isRestartSign(status: number | undefined, bodyOrCode: string): boolean {
  if (status === 503) return /shutting down|waiting for spool startup/i.test(bodyOrCode);
  return status === undefined && ["ECONNREFUSED", "ECONNRESET", "EPIPE"].includes(bodyOrCode);
}

/** kumod's per-recipient errors read `<email>: <error>`; grouping is by the error text alone. */
export function errorGroupKey(entry: string): string {
  const m = /^[^\s@]+@[^\s:]+: (.*)$/s.exec(entry);
  return (m ? (m[1] as string) : entry).trim();
}

/** Pulls the field name out of serde's messages ("unknown field `foo`, expected one of ..."). */
export function fieldFromKumodMessage(body: string): string | undefined {
  return /(?:unknown|missing) field `([^`]+)`/.exec(body)?.[1];
}

/**
 * Largest batch likely to fit under kumod's request_body_limit (2 MiB unless the policy changed it), from the size
 * of the rejected request. A request already under 2 MiB means a lower configured limit: halve.
 */
export function suggestBatch(batch: number, bodyBytes: number, limitBytes = 2 * 1024 * 1024): number {
  if (bodyBytes <= limitBytes) return Math.max(1, Math.floor(batch / 2));
  return Math.max(1, Math.floor((batch * limitBytes * 0.9) / bodyBytes));
}

export interface HintContext {
  url: string;
  /** --timeout, for a request that got no answer. */
  timeoutMs: number;
  user?: string;
  envFile: string;
  batch: number;
  bodyBytes: number;
  body: string;
  attempts: number;
  /** Set when the batch was given up because kumod stayed unavailable for longer than --restart-budget. */
  budget?: { waitedMs: number; text: string };
}

/** The message and the fix printed for a fatal outcome. */
export function explain(exitCode: ExitCode, reason: string, ctx: HintContext): { message: string; hint: string } {
  const text = ctx.body.trim() || "(empty body)";
  switch (exitCode) {
    case EXIT.kumodUnreachable:
      if (ctx.budget) {
        return {
          message: `cannot reach kumod at ${ctx.url} (${reason}) for ${formatDuration(ctx.budget.waitedMs)}, longer than --restart-budget ${ctx.budget.text}`,
          hint:
            "kumod answered earlier in this run, then went away and did not come back in time: is the pod " +
            "crash-looping or stuck in Pending (`npm run status`, the kumod logs in the Tilt UI)? Is the " +
            "port-forward back (`npm run doctor`)? If a restart here takes longer, raise --restart-budget.",
        };
      }
      if (reason === "ETIMEDOUT") {
        return {
          message: `kumod at ${ctx.url} did not answer a request within ${ctx.timeoutMs / 1000} s (--timeout)`,
          hint:
            "Something holds that port but sends no HTTP answer: a stuck port-forward (restart `tilt up`), or not " +
            "kumod's HTTP listener (`npm run doctor` checks). If kumod is only slow under load, raise --timeout or " +
            "lower --concurrency and --batch.",
        };
      }
      return {
        message: `cannot reach kumod at ${ctx.url} (${reason})`,
        hint:
          "Is `tilt up` running, and is its port-forward to kumod:8000 up? `npm run doctor` checks both. " +
          "Set KUMO_HTTP_URL (or .env) if kumod listens elsewhere.",
      };
    case EXIT.unauthorized:
      return {
        message: `kumod refused the credentials${ctx.user ? ` for user "${ctx.user}"` : " (none were sent)"} (401: ${text})`,
        hint: ctx.user
          ? `The credentials in ${ctx.envFile} do not match the kumo-http-auth Secret in the cluster. ` +
            "Re-seed with `npm run seed`, then run `tilt up` again so the Secret is rebuilt; or pass --user/--password."
          : `No credentials found (${ctx.envFile} missing?). Run \`npm run seed\`, then \`tilt up\` again.`,
      };
    case EXIT.unprocessable: {
      const field = fieldFromKumodMessage(text);
      return {
        message: `kumod rejected the request (422): ${text}${field ? `\n  field: ${field}` : ""}`,
        hint: "kumod rejects unknown fields and wrong types; keep the payload to the fields listed in `--help`.",
      };
    }
    case EXIT.tooLarge:
      return {
        message: `kumod refused a ${ctx.bodyBytes}-byte request carrying ${ctx.batch} recipients (413: ${text})`,
        hint: `The request body limit is 2 MiB: use a smaller --batch, e.g. --batch ${suggestBatch(ctx.batch, ctx.bodyBytes)}.`,
      };
    case EXIT.unavailable:
      if (ctx.budget) {
        return {
          message: `kumod answered 503 for ${formatDuration(ctx.budget.waitedMs)}, longer than --restart-budget ${ctx.budget.text} (${ctx.attempts} attempts): ${text}`,
          hint:
            "A pod restart normally ends well within that. Check `npm run status` and the kumod logs in the Tilt " +
            "UI (a stop waiting for pending activities can take minutes); raise --restart-budget if it is expected.",
        };
      }
      return {
        message: `kumod answered 503 on ${ctx.attempts} attempts in a row: ${text}`,
        hint:
          "kumod is shutting down, shedding load, low on disk or still starting its spool. " +
          "Check `npm run status` and the kumod logs in the Tilt UI, then retry (or lower --rate/--concurrency).",
      };
    default:
      return explainHttpError(reason, text, ctx.url);
  }
}

/** The message and the fix for an HTTP status without its own exit code (400, 404, 405, 415, 500...). */
export function explainHttpError(status: string, body: string, url: string): { message: string; hint: string } {
  const text = body.trim() || "(empty body)";
  if (status === "404" || status === "405") {
    return {
      message: `${url} answered HTTP ${status} to POST /api/inject/v1 (${text}): it is not kumod's inject API`,
      hint:
        "Wrong port? `tilt up` forwards kumod's HTTP listener to http://localhost:8000; set --url or " +
        "KUMO_HTTP_URL (.env) to it. `npm run doctor` checks the port-forward.",
    };
  }
  return {
    message: `kumod answered HTTP ${status}: ${text}`,
    hint:
      status === "400"
        ? "The body or the Authorization header was malformed."
        : "See kumod's logs in the Tilt UI (a 500 usually means a bad envelope_sender or a failing policy hook).",
  };
}
