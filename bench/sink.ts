/**
 * npm run bench:sink [-- --json] [-- --quick]
 *
 * Our sink and Postfix smtp-sink, side by side, driven by Postfix smtp-source (20 sessions, connections reused,
 * no pipelining) at 1 KiB and 100 KiB, in alternating order. Prints msgs/s, server CPU µs per message, peak RSS
 * and the ratio; then our sink's RSS with 1,000 concurrent sessions, and the cost of the `realistic` rules
 * against `accept-all`. Loopback only.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOW_TO_GET, requireTool } from "../test/require-tool.ts";
import { startSink } from "../test/sink/helpers.ts";

const SMTP_SOURCE = "/usr/sbin/smtp-source";
const SMTP_SINK = "/usr/sbin/smtp-sink";
const args = new Set(process.argv.slice(2));
const json = args.has("--json");
const quick = args.has("--quick");
const ROUNDS = quick ? 1 : 5;
const RULE_ROUNDS = quick ? 2 : 11;
const CLOCK_TICK_US = 10_000; // USER_HZ is 100 on Linux

function progress(msg: string): void {
  if (!json) process.stderr.write(`${msg}\n`);
}

interface Server {
  name: string;
  proc: ChildProcess;
  port: number;
  /** Switches the active scenario (our sink only), so scenarios are compared inside one process. */
  select?: (scenario: string) => Promise<void>;
}

/**
 * Our sink as its image runs it (Dockerfile CMD and ENV, via the test helper), on an ephemeral loopback port. It
 * starts in `accept-all`, not the file's default: every measurement names the scenario it measures.
 */
async function startOurs(name: string): Promise<Server> {
  const sink = await startSink({ SINK_SEED: "1", SINK_LOG_CONNECTIONS: "false", SINK_SCENARIO: "accept-all" });
  const select = async (scenario: string) => {
    const res = await sink.http("/api/scenario", { method: "PUT", body: JSON.stringify({ name: scenario }) });
    if (res.status !== 200) throw new Error(`cannot select scenario ${scenario}: HTTP ${res.status}`);
  };
  return { name, proc: sink.proc, port: sink.smtpPort, select };
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function startSmtpSink(): Promise<Server> {
  const port = await freePort();
  const user = process.getuid?.() === 0 ? ["-u", "nobody"] : [];
  const proc = spawn(SMTP_SINK, [...user, `127.0.0.1:${port}`, "1024"], { stdio: "ignore" });
  for (let i = 0; i < 50; i++) {
    try {
      await smtpSource(["-s", "1", "-m", "1", `127.0.0.1:${port}`]);
      return { name: "smtp-sink", proc, port };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error("smtp-sink did not start");
}

/**
 * Runs smtp-source with its stderr in a file: it prints a warning for every refused message, and reading those
 * through a pipe would wake this process during the measurement and take CPU from the servers being compared.
 */
async function smtpSource(argv: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "bench-sink-"));
  const errPath = join(dir, "stderr");
  const err = openSync(errPath, "w");
  try {
    const child = spawn(SMTP_SOURCE, argv, { stdio: ["ignore", "ignore", err] });
    const code = await new Promise<number | null>((resolve, reject) => {
      child.on("error", reject);
      child.on("exit", resolve);
    });
    if (code !== 0) {
      const tail = readFileSync(errPath, "utf8").trim().split("\n").slice(-3).join("\n");
      throw new Error(`smtp-source exited with ${code}: ${tail}`);
    }
  } finally {
    closeSync(err);
    rmSync(dir, { recursive: true, force: true });
  }
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.split(" ") ?? [];
  return Number(fields[11]) + Number(fields[12]);
}

function rssKiB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}

interface Result {
  msgsPerSec: number;
  cpuUsPerMsg: number;
  peakRssMiB: number;
}

async function load(server: Server, opts: { sessions: number; messages: number; size: number; to?: string }) {
  const pid = server.proc.pid as number;
  const cpu0 = cpuTicks(pid);
  let peak = rssKiB(pid);
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssKiB(pid));
  }, 50);
  const t0 = process.hrtime.bigint();
  const source = ["-s", String(opts.sessions), "-m", String(opts.messages), "-l", String(opts.size), "-d"];
  // -A: a deferral from the realistic scenario must not stop the client.
  source.push("-A", "-f", "bench@example.net", "-t", opts.to ?? "user@example.com");
  await smtpSource([...source, `127.0.0.1:${server.port}`]);
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  clearInterval(sampler);
  peak = Math.max(peak, rssKiB(pid));
  const cpuUs = (cpuTicks(pid) - cpu0) * CLOCK_TICK_US;
  return {
    msgsPerSec: opts.messages / seconds,
    cpuUsPerMsg: cpuUs / opts.messages,
    peakRssMiB: peak / 1024,
  } satisfies Result;
}

function signed(x: number): string {
  return x > 0 ? `+${x}` : String(x);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function summarize(results: Result[]): Result {
  return {
    msgsPerSec: Math.round(median(results.map((r) => r.msgsPerSec))),
    cpuUsPerMsg: Math.round(median(results.map((r) => r.cpuUsPerMsg)) * 10) / 10,
    peakRssMiB: Math.round(Math.max(...results.map((r) => r.peakRssMiB)) * 10) / 10,
  };
}

interface Contender {
  name: string;
  server: Server;
  scenario?: string;
}

async function compare(
  a: Contender,
  b: Contender,
  opts: { sessions: number; messages: number; size: number; to?: string },
  rounds = ROUNDS,
) {
  const ra: Result[] = [];
  const rb: Result[] = [];
  for (let i = 0; i < rounds; i++) {
    // Alternate who goes first so drift in the machine's load hits both alike.
    const order = i % 2 === 0 ? [a, b] : [b, a];
    for (const c of order) {
      if (c.scenario) await c.server.select?.(c.scenario);
      const r = await load(c.server, opts);
      (c === a ? ra : rb).push(r);
      progress(`  ${c.name.padEnd(22)} ${String(Math.round(r.msgsPerSec)).padStart(7)} msgs/s`);
    }
  }
  // Ratios of the two runs of each round, then their median: steadier than a ratio of medians when the machine's
  // load drifts during the benchmark.
  const paired = median(ra.map((r, i) => r.msgsPerSec / (rb[i] as Result).msgsPerSec));
  const pairedCpu = median(ra.map((r, i) => r.cpuUsPerMsg / (rb[i] as Result).cpuUsPerMsg));
  return { a: summarize(ra), b: summarize(rb), ratio: Math.round(paired * 100) / 100, cpuRatio: pairedCpu };
}

async function main(): Promise<void> {
  const started = Date.now();
  for (const tool of [SMTP_SOURCE, SMTP_SINK]) requireTool(tool, HOW_TO_GET.postfix);
  const ours = await startOurs("sink");
  const postfix = await startSmtpSink();
  const servers = [ours, postfix];
  try {
    // Untimed warm-up: V8 compiles the hot path before anything is measured (smtp-sink needs none, but gets it too).
    progress("warm-up");
    const warm = { sessions: 20, messages: quick ? 5_000 : 20_000, size: 1024 };
    await ours.select?.("realistic");
    await load(ours, warm);
    await ours.select?.("accept-all");
    for (const s of servers) await load(s, warm);
    const report: Record<string, unknown> = {};
    const sizes = [
      { label: "1KiB", size: 1024, messages: quick ? 10_000 : 30_000 },
      { label: "100KiB", size: 102_400, messages: quick ? 2_000 : 6_000 },
    ];
    for (const { label, size, messages } of sizes) {
      progress(`${label}: 20 sessions, ${messages} messages, ${ROUNDS} alternating rounds`);
      const r = await compare(
        { name: "sink", server: ours, scenario: "accept-all" },
        { name: "smtp-sink", server: postfix },
        {
          sessions: 20,
          messages,
          size,
        },
      );
      report[label] = { sink: r.a, smtp_sink: r.b, ratio: r.ratio };
    }
    progress("1,000 concurrent sessions, 1 KiB, on a fresh sink process");
    const fresh = await startOurs("sink (1,000 sessions)");
    servers.push(fresh);
    const wide = await load(fresh, { sessions: 1000, messages: quick ? 10_000 : 30_000, size: 1024 });
    report.connections1000 = summarize([wide]);
    // The smallest difference measured here: more, shorter rounds keep machine noise out of the median.
    progress(`realistic vs accept-all in the same sink process, 1 KiB, ${RULE_ROUNDS} alternating rounds`);
    const rules = await compare(
      { name: "accept-all", server: ours, scenario: "accept-all" },
      { name: "realistic", server: ours, scenario: "realistic" },
      { sessions: 20, messages: quick ? 5_000 : 15_000, size: 1024, to: "user@example.com" },
      RULE_ROUNDS,
    );
    report.rules = {
      accept_all: rules.a,
      realistic: rules.b,
      throughput_change_percent: Math.round((1 / rules.ratio - 1) * 1000) / 10,
      cpu_change_percent: Math.round((1 / rules.cpuRatio - 1) * 1000) / 10,
    };
    report.seconds = Math.round((Date.now() - started) / 1000);
    if (json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const row = (name: string, r: Result) =>
      `  ${name.padEnd(20)} ${String(r.msgsPerSec).padStart(8)} msgs/s ${String(r.cpuUsPerMsg).padStart(8)} µs CPU/msg ${String(r.peakRssMiB).padStart(7)} MiB peak RSS`;
    const out: string[] = [];
    for (const label of ["1KiB", "100KiB"]) {
      const r = report[label] as { sink: Result; smtp_sink: Result; ratio: number };
      out.push(`${label} (20 sessions, reused connections, medians of ${ROUNDS})`);
      out.push(
        row("sink", r.sink),
        row("postfix smtp-sink", r.smtp_sink),
        `  ratio sink / smtp-sink (median of per-round ratios): ${r.ratio}x`,
      );
    }
    out.push("1,000 concurrent sessions (sink)", row("sink", report.connections1000 as Result));
    const rr = report.rules as {
      accept_all: Result;
      realistic: Result;
      throughput_change_percent: number;
      cpu_change_percent: number;
    };
    out.push(
      `rules engine cost (sink, medians of ${RULE_ROUNDS})`,
      row("accept-all", rr.accept_all),
      row("realistic", rr.realistic),
      `  realistic vs accept-all (median of per-round ratios): throughput ${signed(rr.throughput_change_percent)} %, sink CPU per message ${signed(rr.cpu_change_percent)} %`,
    );
    out.push(`done in ${report.seconds} s`);
    process.stdout.write(`${out.join("\n")}\n`);
  } finally {
    for (const s of servers) s.proc.kill("SIGTERM");
  }
}

main().catch((err: Error) => {
  process.stderr.write(`bench:sink failed: ${err.message}\n`);
  process.exit(1);
});
