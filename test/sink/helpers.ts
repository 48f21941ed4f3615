/** Test helpers: start the sink exactly as its image does, and talk SMTP over real TCP. */
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { SinkStats } from "../../scripts/lib/sink-api.ts";

export const SINK_DIR = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "sink");

/** The final stage's exec-form CMD and ENV of sink/Dockerfile: the image's start command. */
export function imageCommand(): { argv: string[]; env: Record<string, string> } {
  const text = readFileSync(join(SINK_DIR, "Dockerfile"), "utf8");
  const stages = text.split(/^FROM\s/m);
  const last = stages[stages.length - 1] ?? "";
  const cmd = last.match(/^CMD\s+(\[.*\])\s*$/m)?.[1];
  if (!cmd) throw new Error("sink/Dockerfile: final stage has no exec-form CMD");
  const env: Record<string, string> = {};
  for (const m of last.matchAll(/^ENV\s+(\w+)=("[^"]*"|\S+)\s*$/gm)) {
    env[m[1] as string] = (m[2] as string).replace(/^"|"$/g, "");
  }
  return { argv: JSON.parse(cmd) as string[], env };
}

export interface LogLine {
  msg: string;
  level: string;
  [key: string]: unknown;
}

export interface RunningSink {
  proc: ChildProcess;
  smtpPort: number;
  /** The port bound for each SINK_SITE_PORTS site, from the "listening" line. */
  sitePorts: Record<string, number>;
  httpPort: number;
  logs: LogLine[];
  http(path: string, init?: RequestInit): Promise<Response>;
  stats(): Promise<SinkStats>;
  /** SIGTERM and wait for the exit code. */
  stop(): Promise<number | null>;
  exited: Promise<number | null>;
}

/** Starts the sink on loopback with ephemeral ports and waits for its "listening" log line. */
export async function startSink(env: Record<string, string> = {}): Promise<RunningSink> {
  const { argv, env: imageEnv } = imageCommand();
  const [cmd, ...args] = argv;
  const proc = spawn(cmd as string, args, {
    cwd: SINK_DIR,
    env: {
      ...process.env,
      ...imageEnv,
      SINK_HOST: "127.0.0.1",
      SINK_SMTP_PORT: "0",
      SINK_HTTP_PORT: "0",
      SINK_SEED: "42",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: LogLine[] = [];
  let stderr = "";
  proc.stderr?.on("data", (c: Buffer) => {
    stderr += c.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.on("exit", (code) => resolve(code)));
  const lines = createInterface({ input: proc.stdout as NodeJS.ReadableStream });
  const listening = new Promise<LogLine>((resolve, reject) => {
    lines.on("line", (line) => {
      const entry = JSON.parse(line) as LogLine;
      logs.push(entry);
      if (entry.msg === "listening") resolve(entry);
    });
    exited.then((code) =>
      reject(new Error(`sink exited (${code}) before listening: ${JSON.stringify(logs)} ${stderr}`)),
    );
  });
  const ready = await listening;
  const httpPort = ready.http_port as number;
  const http = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${httpPort}${path}`, init);
  return {
    proc,
    smtpPort: ready.smtp_port as number,
    sitePorts: ready.site_ports as Record<string, number>,
    httpPort,
    logs,
    http,
    stats: async () => (await (await http("/api/stats")).json()) as SinkStats,
    stop: async () => {
      if (proc.exitCode === null) proc.kill("SIGTERM");
      return exited;
    },
    exited,
  };
}

/** Runs the sink to completion (for start-up failures): exit code and log lines. */
export async function runSinkToExit(env: Record<string, string>): Promise<{ code: number | null; logs: LogLine[] }> {
  const { argv, env: imageEnv } = imageCommand();
  const [cmd, ...args] = argv;
  const proc = spawn(cmd as string, args, {
    cwd: SINK_DIR,
    env: { ...process.env, ...imageEnv, SINK_HOST: "127.0.0.1", SINK_SMTP_PORT: "0", SINK_HTTP_PORT: "0", ...env },
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  proc.stdout?.on("data", (c: Buffer) => {
    out += c.toString();
  });
  const code = await new Promise<number | null>((resolve) => proc.on("exit", resolve));
  return {
    code,
    logs: out
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as LogLine),
  };
}

/** A raw SMTP client: writes exactly the bytes given and reads complete (multi-line) replies. */
export class RawSmtp {
  private buffered = "";
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on("data", (c: Buffer) => {
      this.buffered += c.toString("utf8");
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on("error", () => {});
    socket.on("close", () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** `localAddress`: the client IP the sink sees, any of 127.0.0.0/8 on Linux loopback. */
  static open(port: number, localAddress?: string): Promise<RawSmtp> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: "127.0.0.1", localAddress }, () => resolve(new RawSmtp(s)));
      s.once("error", reject);
    });
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => this.socket.write(data, () => resolve()));
  }

  /** The next complete reply (all its lines), or null if the server closed first. */
  async reply(timeoutMs = 5000): Promise<string | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = this.buffered.match(/^(?:\d{3}-[^\n]*\n)*\d{3}(?: [^\n]*)?\r?\n/);
      if (m) {
        this.buffered = this.buffered.slice(m[0].length);
        return m[0].trimEnd();
      }
      if (this.closed) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no SMTP reply within ${timeoutMs} ms; have ${JSON.stringify(this.buffered)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async replies(n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) out.push((await this.reply()) ?? "<closed>");
    return out;
  }

  /** Sends one command line and returns its reply. */
  async cmd(line: string): Promise<string | null> {
    await this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Greeting + EHLO, returning the EHLO reply. */
  async hello(): Promise<string> {
    const greeting = await this.reply();
    if (!greeting?.startsWith("220")) throw new Error(`unexpected greeting ${greeting}`);
    return (await this.cmd("EHLO client.test")) ?? "<closed>";
  }

  /** Resolves when the server has closed the connection. */
  async closedByServer(timeoutMs = 5000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return this.closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Polls until `check` returns true (for counters updated asynchronously, e.g. after a reload). */
/** One message on an open session: MAIL, RCPTs and DATA pipelined, then the body; returns every reply. */
export async function sendMessage(c: RawSmtp, rcpts: string[]): Promise<string[]> {
  await c.write(`MAIL FROM:<s@sender.test>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join("")}DATA\r\n`);
  const replies = await c.replies(rcpts.length + 2);
  if (!replies[replies.length - 1]?.startsWith("354")) return replies;
  await c.write("Subject: t\r\n\r\nbody\r\n.\r\n");
  replies.push((await c.reply()) ?? "<closed>");
  return replies;
}

export async function eventually(check: () => Promise<boolean> | boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}

export function rssKiB(pid: number): number {
  const m = readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : 0;
}
