import { createServer } from "node:net";
import { resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import type { Summary } from "../../scripts/lib/inject-summary.ts";

export const ROOT = resolve(import.meta.dirname, "..", "..");

/**
 * A URL where nothing listens: a port the system just handed out and took back. Not a fixed low port such as 9:
 * fetch refuses those ("bad ports") before trying, so they would not test an unreachable server.
 */
export async function closedUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return `http://127.0.0.1:${port}`;
}

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

/** What `inject --json` prints: the script's own summary type, so the tests read the fields users rely on. */
export type JsonSummary = Summary;

export function summaryOf(stdout: string): JsonSummary {
  return JSON.parse(stdout.trim().split("\n").at(-1) ?? "") as JsonSummary;
}
