/**
 * npm run bench:inject [-- --json] [--seconds N] [--rounds R]
 *
 * The injector against a local endpoint that answers instantly, side by side with autocannon sending the same
 * request body at the same concurrency, then the injector's RSS for --count 10,000 vs a time slice of
 * --count 10,000,000. The endpoint runs in its own process; with taskset available the endpoint gets CPU 1 and
 * each client CPU 0, so "one core" is literal.
 */
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { execa } from "execa";
import { GeneratedBodyWriter } from "../scripts/lib/body-writer.ts";
import { REPO_ROOT } from "../scripts/lib/env.ts";
import { bodyFrame, requestTemplate } from "../scripts/lib/inject-payload.ts";
import { parseDomains, RecipientGenerator } from "../scripts/lib/recipients.ts";

const BATCH = 100;
const CONCURRENCY = 16;
const REPLY = JSON.stringify({ success_count: BATCH, fail_count: 0, failed_recipients: [], errors: [] });

function serve(): void {
  const server = http.createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(REPLY) });
      res.end(REPLY);
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, "127.0.0.1", () => process.stdout.write(`${(server.address() as AddressInfo).port}\n`));
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-c", "0", "true"]);
    return true;
  } catch {
    return false;
  }
}

function pinned(cpu: number, cmd: string, args: string[], useTaskset: boolean): [string, string[]] {
  return useTaskset ? ["taskset", ["-c", String(cpu), cmd, ...args]] : [cmd, args];
}

interface InjectSummary {
  requests: { sent: number };
  recipients: { sent: number; accepted: number };
  elapsed_s: number;
  rate: { recipients_per_s: number; requests_per_s: number };
  latency_ms: { p50: number; p99: number };
  max_rss_bytes: number;
}

async function runInjector(url: string, args: string[], useTaskset: boolean): Promise<InjectSummary> {
  const [cmd, argv] = pinned(
    0,
    process.execPath,
    ["--import", "tsx", resolve(REPO_ROOT, "scripts/inject.ts"), "--json", "--no-progress", ...args],
    useTaskset,
  );
  const r = await execa(cmd, argv, {
    reject: false,
    cwd: REPO_ROOT,
    env: { KUMO_HTTP_URL: url, KUMO_HTTP_USER: "", KUMO_HTTP_PASSWORD: "" },
  });
  if (r.exitCode !== 0) throw new Error(`injector exited ${r.exitCode}: ${r.stderr}`);
  return JSON.parse(String(r.stdout)) as InjectSummary;
}

async function runAutocannon(url: string, bodyFile: string, seconds: number, useTaskset: boolean) {
  const bin = resolve(REPO_ROOT, "node_modules/autocannon/autocannon.js");
  const [cmd, argv] = pinned(
    0,
    process.execPath,
    [
      bin,
      "-c",
      String(CONCURRENCY),
      "-d",
      String(seconds),
      "-m",
      "POST",
      "-H",
      "content-type=application/json",
      "-i",
      bodyFile,
      "-j",
      `${url}/api/inject/v1`,
    ],
    useTaskset,
  );
  const r = await execa(cmd, argv, { reject: false });
  if (r.exitCode !== 0) throw new Error(`autocannon exited ${r.exitCode}: ${r.stderr}`);
  const out = JSON.parse(String(r.stdout)) as {
    requests: { total: number; average: number };
    duration: number;
    non2xx: number;
  };
  return {
    requests_per_s: Math.round(out.requests.total / out.duration),
    total: out.requests.total,
    non2xx: out.non2xx,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      serve: { type: "boolean" },
      json: { type: "boolean" },
      seconds: { type: "string" },
      rounds: { type: "string" },
    },
  });
  if (values.serve) return serve();
  const seconds = Number(values.seconds ?? 5);
  const rounds = Number(values.rounds ?? 3);
  const useTaskset = hasTaskset();
  const [scmd, sargs] = pinned(
    1,
    process.execPath,
    ["--import", "tsx", resolve(REPO_ROOT, "bench/inject.ts"), "--serve"],
    useTaskset,
  );
  const server = execa(scmd, sargs, { reject: false });
  const port = await new Promise<number>((ok, fail) => {
    server.stdout?.once("data", (c: Buffer) => ok(Number(c.toString().trim())));
    server.then((r) => fail(new Error(`endpoint exited: ${r.stderr}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  const log = (s: string) => {
    if (!values.json) process.stderr.write(`${s}\n`);
  };
  try {
    // The exact body the injector sends for one batch of the sample payload.
    const sample = JSON.parse(
      execFileSync("cat", [resolve(REPO_ROOT, "sample_http_inject_payload.json")]).toString(),
    ) as Record<string, unknown>;
    const frame = bodyFrame(
      requestTemplate(sample, { deferredSpool: false, deferredGeneration: false }),
      (sample.recipients as unknown[])[0],
    );
    const writer = new GeneratedBodyWriter(frame, new RecipientGenerator(parseDomains("example.com"), "user", BATCH));
    const body = writer.next(BATCH)?.body as Buffer;
    const bodyFile = join(tmpdir(), `bench-inject-body-${process.pid}.json`);
    writeFileSync(bodyFile, body);

    log(
      `endpoint ${url}; batch ${BATCH}, concurrency ${CONCURRENCY}, ${seconds} s per run, taskset ${useTaskset ? "on" : "off"}`,
    );
    log("warm-up ...");
    await runInjector(
      url,
      ["--count", "200000", "--batch", String(BATCH), "--concurrency", String(CONCURRENCY)],
      useTaskset,
    );
    // Interleaved rounds, medians: the two tools see the same background noise.
    const injRuns: InjectSummary[] = [];
    const acRuns: Awaited<ReturnType<typeof runAutocannon>>[] = [];
    for (let round = 1; round <= rounds; round++) {
      log(
        `round ${round}/${rounds}: injector --duration ${seconds}s --batch ${BATCH} --concurrency ${CONCURRENCY} ...`,
      );
      injRuns.push(
        await runInjector(
          url,
          [
            "--count",
            "1000000000",
            "--duration",
            `${seconds}s`,
            "--batch",
            String(BATCH),
            "--concurrency",
            String(CONCURRENCY),
          ],
          useTaskset,
        ),
      );
      log(`round ${round}/${rounds}: autocannon -c ${CONCURRENCY} -d ${seconds} (same ${body.length}-byte body) ...`);
      acRuns.push(await runAutocannon(url, bodyFile, seconds, useTaskset));
    }
    const inj = injRuns.sort((a, b) => a.rate.requests_per_s - b.rate.requests_per_s)[
      Math.floor(rounds / 2)
    ] as InjectSummary;
    const ac = acRuns.sort((a, b) => a.requests_per_s - b.requests_per_s)[
      Math.floor(rounds / 2)
    ] as (typeof acRuns)[number];
    log("RSS: --count 10000 ...");
    const small = await runInjector(url, ["--count", "10000", "--batch", String(BATCH)], useTaskset);
    const slice = async (secs: number) => {
      log(`RSS: --count 10000000, first ${secs} s ...`);
      return runInjector(
        url,
        [
          "--count",
          "10000000",
          "--duration",
          `${secs}s`,
          "--batch",
          String(BATCH),
          "--concurrency",
          String(CONCURRENCY),
        ],
        useTaskset,
      );
    };
    const big = await slice(seconds);
    const bigger = await slice(2 * seconds);
    const result = {
      endpoint: url,
      taskset: useTaskset,
      batch: BATCH,
      concurrency: CONCURRENCY,
      body_bytes: body.length,
      injector: {
        recipients_per_s: inj.rate.recipients_per_s,
        requests_per_s: inj.rate.requests_per_s,
        latency_p50_ms: inj.latency_ms.p50,
        latency_p99_ms: inj.latency_ms.p99,
      },
      autocannon: { requests_per_s: ac.requests_per_s, non2xx: ac.non2xx },
      rounds,
      seconds_per_run: seconds,
      all_runs: {
        injector_requests_per_s: injRuns.map((r) => r.rate.requests_per_s),
        autocannon_requests_per_s: acRuns.map((r) => r.requests_per_s),
      },
      ratio_to_autocannon: Math.round((inj.rate.requests_per_s / ac.requests_per_s) * 100) / 100,
      rss: {
        count_10k_mib: Math.round(small.max_rss_bytes / 1048576),
        count_10m_slice_mib: Math.round(big.max_rss_bytes / 1048576),
        count_10m_slice_recipients_sent: big.recipients.sent,
        count_10m_double_slice_mib: Math.round(bigger.max_rss_bytes / 1048576),
        count_10m_double_slice_recipients_sent: bigger.recipients.sent,
      },
      targets: { recipients_per_s: 100_000, ratio_to_autocannon: 0.7 },
    };
    const meets = result.injector.recipients_per_s >= 100_000 && result.ratio_to_autocannon >= 0.7;
    if (values.json) process.stdout.write(`${JSON.stringify({ ...result, meets_targets: meets })}\n`);
    else {
      const n = (x: number) => x.toLocaleString("en-US");
      process.stdout.write(
        `${[
          `injector    ${n(result.injector.recipients_per_s)} recipients/s, ${n(result.injector.requests_per_s)} requests/s (p50 ${result.injector.latency_p50_ms} ms, p99 ${result.injector.latency_p99_ms} ms)`,
          `autocannon  ${n(ac.requests_per_s)} requests/s (same body, same concurrency); medians of ${rounds} interleaved ${seconds} s runs`,
          `ratio       ${result.ratio_to_autocannon}x autocannon (target >= 0.7x); recipients/s target >= 100,000`,
          `max RSS     --count 10,000: ${result.rss.count_10k_mib} MiB; --count 10,000,000: ${result.rss.count_10m_slice_mib} MiB after ${n(big.recipients.sent)} sent (${seconds} s), ${result.rss.count_10m_double_slice_mib} MiB after ${n(bigger.recipients.sent)} sent (${2 * seconds} s)`,
          meets ? "targets met" : "TARGETS NOT MET",
        ].join("\n")}\n`,
      );
    }
    if (!meets) process.exitCode = 1;
  } finally {
    server.kill("SIGTERM");
    await server;
  }
}

await main();
