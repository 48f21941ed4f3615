import { parseArgs } from "node:util";
import { parseDurationMs } from "./pacing.ts";
import { checkLocalPart, parseDomains, type WeightedDomain } from "./recipients.ts";
import { httpUrlProblem, KUMOD_API, SINK_API } from "./urls.ts";

export interface InjectOptions {
  help: boolean;
  /** --url, split at commas: one or more kumod HTTP APIs, sent to in turn. */
  urls?: string[];
  user?: string;
  password?: string;
  payload?: string;
  count?: number;
  domains: WeightedDomain[];
  localPart: string;
  batch: number;
  concurrency: number;
  rate?: number;
  durationMs?: number;
  deferredSpool: boolean;
  deferredGeneration: boolean;
  json: boolean;
  verify: boolean;
  verifyTimeoutMs: number;
  sinkUrl?: string;
  retries: number;
  /** How long a batch keeps being retried while kumod restarts (503 "shutting down", connection refused). */
  restartBudgetMs: number;
  /** How long one request may wait for kumod's answer. */
  timeoutMs: number;
  progress: boolean;
}

export const DEFAULT_DOMAINS = "example.com";
/** Far above a healthy kumod's answer to a 2 MiB request, far below the two minutes users waited before. */
export const DEFAULT_TIMEOUT = "30s";
/**
 * One kumod pod's whole restart: the graceful stop answers 503 "shutting down" for about 3 s (longer while
 * deliveries finish), then the pod is gone until the StatefulSet has a new one listening: seconds to tens of seconds
 * with the image present (a preStop sleep, the spool PVC re-attached, spool enumeration), plus the port-forward
 * following the new pod. Two minutes covers that with room to spare, and still ends a run whose kumod is
 * crash-looping or stuck within minutes instead of hanging it. A rolling restart takes the pods one at a time, so each
 * outage is one pod's restart and needs no more.
 */
export const DEFAULT_RESTART_BUDGET = "2m";

function positiveInt(name: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  const clean = text.replaceAll("_", "");
  const v = /^\d+$/.test(clean) ? Number(clean) : Number.NaN;
  if (!Number.isSafeInteger(v) || v < 1 || v > max) {
    throw new Error(`--${name} must be a whole number from 1 to ${max.toLocaleString("en-US")}, got "${text}"`);
  }
  return v;
}

function duration(name: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0)
    throw new Error(`--${name} must be a duration like 30s, 2m, 1m30s or 1500ms, got "${text}"`);
  return ms;
}

/** Like a duration, but 0 is allowed: give up at the first restart sign, as a run without this budget would. */
function restartBudget(text: string): number {
  const ms = parseDurationMs(text);
  if (ms === undefined || ms > 3_600_000)
    throw new Error(`--restart-budget must be a duration from 0 to 1h like 2m, 90s or 0, got "${text}"`);
  return ms;
}

/** "http://a:8000, http://b:8000" → both URLs; an empty entry (a stray comma) is an error, not a URL to skip. */
export function splitUrls(text: string): string[] {
  const urls = text.split(",").map((u) => u.trim());
  const dupe = urls.find((u, i) => urls.indexOf(u) !== i);
  if (urls.some((u) => u === "")) throw new Error(`--url "${text}" has an empty entry: give URLs separated by commas`);
  if (dupe !== undefined) throw new Error(`--url lists ${dupe} twice: give each kumod once`);
  return urls;
}

/** Pure: argv → options, or an Error whose message is meant for the user (exit code "usage"). */
export function parseInjectArgs(argv: string[]): InjectOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: "boolean", short: "h" },
      url: { type: "string" },
      user: { type: "string", short: "u" },
      password: { type: "string", short: "p" },
      payload: { type: "string" },
      count: { type: "string", short: "n" },
      domains: { type: "string" },
      "local-part": { type: "string" },
      batch: { type: "string", short: "b" },
      concurrency: { type: "string", short: "c" },
      rate: { type: "string", short: "r" },
      duration: { type: "string", short: "d" },
      "deferred-spool": { type: "boolean" },
      "deferred-generation": { type: "boolean" },
      json: { type: "boolean" },
      verify: { type: "boolean" },
      "verify-timeout": { type: "string" },
      "sink-url": { type: "string" },
      retries: { type: "string" },
      "restart-budget": { type: "string" },
      timeout: { type: "string" },
      "no-progress": { type: "boolean" },
    },
  });
  if (positionals.length > 0) throw new Error(`unexpected argument "${positionals[0]}" (options start with --)`);
  const count = positiveInt("count", values.count, 1e12);
  const durationMs = duration("duration", values.duration);
  if (values.domains !== undefined && count === undefined && durationMs === undefined) {
    throw new Error("--domains only applies to generated recipients: add --count N or --duration T");
  }
  const rateText = values.rate;
  let rate: number | undefined;
  if (rateText !== undefined) {
    rate = Number(rateText.replaceAll("_", ""));
    if (!Number.isFinite(rate) || rate <= 0 || rate > 10_000_000) {
      throw new Error(`--rate must be recipients per second, a number above 0, got "${rateText}"`);
    }
  }
  const retriesText = values.retries;
  const retries = retriesText === undefined ? 4 : Number(retriesText);
  if (!Number.isInteger(retries) || retries < 0 || retries > 20) {
    throw new Error(`--retries must be a whole number from 0 to 20, got "${retriesText}"`);
  }
  const localPart = values["local-part"] ?? "user";
  checkLocalPart(localPart);
  const urls = values.url === undefined ? undefined : splitUrls(values.url);
  for (const [flag, api, list] of [
    ["url", KUMOD_API, urls ?? []],
    ["sink-url", SINK_API, values["sink-url"] === undefined ? [] : [values["sink-url"]]],
  ] as const) {
    for (const text of list) {
      const problem = httpUrlProblem(text);
      if (problem !== undefined) throw new Error(`--${flag} "${text}" ${problem}: give it like ${api.example}`);
    }
  }
  return {
    help: values.help ?? false,
    urls,
    user: values.user,
    password: values.password,
    payload: values.payload,
    count,
    domains: parseDomains(values.domains ?? DEFAULT_DOMAINS),
    localPart,
    batch: positiveInt("batch", values.batch, 100_000) ?? 100,
    concurrency: positiveInt("concurrency", values.concurrency, 10_000) ?? 8,
    rate,
    durationMs,
    deferredSpool: values["deferred-spool"] ?? false,
    deferredGeneration: values["deferred-generation"] ?? false,
    json: values.json ?? false,
    verify: values.verify ?? false,
    verifyTimeoutMs: duration("verify-timeout", values["verify-timeout"]) ?? 120_000,
    sinkUrl: values["sink-url"],
    retries,
    restartBudgetMs: restartBudget(values["restart-budget"] ?? DEFAULT_RESTART_BUDGET),
    timeoutMs: duration("timeout", values.timeout ?? DEFAULT_TIMEOUT) as number,
    progress: !(values["no-progress"] ?? false),
  };
}
