import { resolve } from "node:path";
import { execa, type ResultPromise } from "execa";

export const ROOT = resolve(import.meta.dirname, "..", "..");

/** Runs the real injector as a user would (tsx, a fresh process), with the repo's .env neutralised. */
export function inject(args: string[], env: Record<string, string> = {}): ResultPromise<{ reject: false }> {
  return execa("node", ["--import", "tsx", resolve(ROOT, "scripts/inject.ts"), ...args], {
    cwd: ROOT,
    reject: false,
    env: {
      KUMO_HTTP_URL: "http://127.0.0.1:9",
      KUMO_HTTP_USER: "",
      KUMO_HTTP_PASSWORD: "",
      SINK_HTTP_URL: "http://127.0.0.1:9",
      ...env,
    },
  });
}

export interface JsonSummary {
  exit_code: number;
  interrupted: boolean;
  requests: { sent: number; ok: number; failed: number; retries: number };
  recipients: { sent: number; accepted: number; failed: number };
  errors: { text: string; count: number }[];
  latency_ms: { p50: number; p95: number; p99: number; max: number };
  elapsed_s: number;
  rate: { recipients_per_s: number; requests_per_s: number; target_recipients_per_s: number | null };
  verify: {
    expected: number;
    delivered: number;
    bounced: number;
    deferral_attempts: number;
    complete: boolean;
  } | null;
  error: { message: string; hint: string } | null;
  max_rss_bytes: number;
}

export function summaryOf(stdout: string): JsonSummary {
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as JsonSummary;
}
