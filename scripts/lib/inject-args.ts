import { parseArgs } from "node:util";
import { parseDurationMs } from "./pacing.ts";
import { checkLocalPart, parseDomains, type WeightedDomain } from "./recipients.ts";
import { httpUrlProblem, KUMOD_API, SINK_API } from "./urls.ts";

export interface InjectOptions {
  help: boolean;
  url?: string;
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
  /** How long one request may wait for kumod's answer. */
  timeoutMs: number;
  progress: boolean;
}

export const DEFAULT_DOMAINS = "example.com";
/** Far above a healthy kumod's answer to a 2 MiB request, far below the two minutes users waited before. */
export const DEFAULT_TIMEOUT = "30s";

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
  for (const [flag, api] of [
    ["url", KUMOD_API],
    ["sink-url", SINK_API],
  ] as const) {
    const text = values[flag];
    const problem = text === undefined ? undefined : httpUrlProblem(text);
    if (problem !== undefined) throw new Error(`--${flag} "${text}" ${problem}: give it like ${api.example}`);
  }
  return {
    help: values.help ?? false,
    url: values.url,
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
    timeoutMs: duration("timeout", values.timeout ?? DEFAULT_TIMEOUT) as number,
    progress: !(values["no-progress"] ?? false),
  };
}
