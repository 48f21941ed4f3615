/** Start-up failures, graceful shutdown, STARTTLS and logging: the sink as an operator sees it. */
import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";
import { eventually, RawSmtp, runSinkToExit, SINK_DIR, startSink } from "./helpers.ts";

const run = promisify(execFile);

describe("start-up", () => {
  it("exits 2 with every invalid variable listed", async () => {
    const { code, logs } = await runSinkToExit({ SINK_SMTP_PORT: "x", SINK_MAX_CONNECTIONS: "0" });
    expect(code).toBe(2);
    expect(logs[0]).toMatchObject({ level: "error", msg: "invalid environment" });
    expect(logs[0]?.details).toHaveLength(2);
  });

  it("exits 2 on a missing or invalid rules file and on an unknown scenario", async () => {
    const missing = await runSinkToExit({ SINK_CONFIG: "/nonexistent/sink.yaml" });
    expect(missing.code).toBe(2);
    expect(missing.logs[0]?.msg).toBe("cannot read the rules file (SINK_CONFIG)");
    const dir = mkdtempSync(join(tmpdir(), "sink-bad-"));
    try {
      const { writeFileSync } = await import("node:fs");
      writeFileSync(join(dir, "sink.yaml"), "scenarios:\n  a:\n    rules: [{name: r, probability: 3}]\n");
      const invalid = await runSinkToExit({ SINK_CONFIG: join(dir, "sink.yaml") });
      expect(invalid.code).toBe(2);
      expect(invalid.logs[0]?.details).toEqual(
        expect.arrayContaining([expect.stringMatching(/^scenarios\.a\.rules\[0\]/)]),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const unknown = await runSinkToExit({ SINK_SCENARIO: "nope" });
    expect(unknown.code).toBe(2);
    expect(JSON.stringify(unknown.logs[0]?.details)).toMatch(/available: accept-all, /);
  });

  it("exits 2 when the STARTTLS certificate cannot be loaded", async () => {
    const { code, logs } = await runSinkToExit({ SINK_TLS_CERT: "/nonexistent.pem", SINK_TLS_KEY: "/nonexistent.key" });
    expect(code).toBe(2);
    expect(logs[0]?.msg).toMatch(/STARTTLS certificate/);
  });
});

describe("graceful shutdown", () => {
  it("on SIGTERM: not ready, idle sessions told 421, the transaction in flight finishes, then exit 0", async () => {
    const sink = await startSink();
    const busy = await RawSmtp.open(sink.smtpPort);
    await busy.hello();
    expect(await busy.cmd("MAIL FROM:<a@drain.test>")).toBe("250 2.1.0 Ok");
    expect(await busy.cmd("RCPT TO:<b@drain.test>")).toBe("250 2.1.5 Ok");
    expect(await busy.cmd("DATA")).toMatch(/^354/);
    await busy.write("Subject: in flight\r\n\r\nfirst half\r\n");
    const idle = await RawSmtp.open(sink.smtpPort);
    await idle.hello();

    sink.proc.kill("SIGTERM");
    expect(await idle.reply()).toBe("421 4.3.2 Service shutting down, closing connection");
    expect(await idle.closedByServer()).toBe(true);
    expect((await sink.http("/readyz")).status).toBe(503);
    await expect(RawSmtp.open(sink.smtpPort)).rejects.toThrow(/ECONNREFUSED/);

    await busy.write("second half\r\n.\r\n");
    expect(await busy.reply()).toBe("250 2.0.0 Ok: queued");
    expect(await busy.reply()).toBe("421 4.3.2 Service shutting down, closing connection");
    expect(await sink.exited).toBe(0);
    expect(sink.logs.find((l) => l.msg === "stopped")).toMatchObject({ forced_closes: 0, messages_accepted: 1 });
  });

  it("closes what is still open after SINK_DRAIN_TIMEOUT_MS and still exits 0", async () => {
    const sink = await startSink({ SINK_DRAIN_TIMEOUT_MS: "300" });
    const stuck = await RawSmtp.open(sink.smtpPort);
    await stuck.hello();
    await stuck.cmd("MAIL FROM:<a@stuck.test>");
    const t0 = Date.now();
    expect(await sink.stop()).toBe(0);
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(sink.logs.find((l) => l.msg === "stopped")).toMatchObject({ forced_closes: 1 });
    expect(await stuck.closedByServer()).toBe(true);
  });
});

/** Every process below `root`, from /proc (parent ids), so the test sees what a signal left running. */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue;
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
  }
  const out: number[] = [];
  for (let queue = [root]; queue.length > 0; ) {
    const next = children.get(queue.shift() as number) ?? [];
    out.push(...next);
    queue.push(...next);
  }
  return out;
}

/** A process that has exited (gone, or a zombie waiting to be reaped) runs nothing and holds no port. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.on("connect", () => {
      s.destroy();
      resolve(false);
    });
    s.on("error", () => resolve(true));
  });
}

describe("npm run sink", () => {
  // SIGTERM reaches npm alone (kill, a process manager, an IDE's stop button); Ctrl-C reaches the whole group.
  it.each([
    ["SIGTERM to npm", "SIGTERM", false],
    ["Ctrl-C", "SIGINT", true],
  ] as const)("stops on %s: no process left, both ports free", async (_, signal, group) => {
    const npm = spawn("npm", ["run", "sink"], {
      cwd: join(SINK_DIR, ".."),
      env: { ...process.env, SINK_HOST: "127.0.0.1", SINK_SMTP_PORT: "0", SINK_HTTP_PORT: "0" },
      stdio: ["ignore", "pipe", "inherit"],
      detached: true,
    });
    const pid = npm.pid as number;
    const exited = once(npm, "exit");
    try {
      const listening = await new Promise<{ smtp_port: number; http_port: number }>((resolve, reject) => {
        let out = "";
        npm.stdout?.on("data", (c: Buffer) => {
          out += c.toString();
          const line = out.split("\n").find((l) => l.includes('"msg":"listening"'));
          if (line) resolve(JSON.parse(line));
        });
        exited.then(() => reject(new Error(`npm run sink exited before listening:\n${out}`)));
      });
      const tree = descendants(pid);
      expect(tree.length).toBeGreaterThan(0);
      process.kill(group ? -pid : pid, signal);
      await exited;
      await eventually(() => ![pid, ...tree].some(running), 10_000);
      expect(await portFree(listening.smtp_port)).toBe(true);
      expect(await portFree(listening.http_port)).toBe(true);
    } finally {
      // Whatever happened above, leave nothing running.
      try {
        process.kill(-pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
  });
});

describe("STARTTLS with a certificate from files", () => {
  let dir: string;
  beforeAll(async () => {
    requireTool("openssl", HOW_TO_GET.openssl);
    dir = mkdtempSync(join(tmpdir(), "sink-tls-"));
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=sink.test",
      "-keyout",
      join(dir, "tls.key"),
      "-out",
      join(dir, "tls.crt"),
    ]);
  });
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("advertises STARTTLS, delivers over TLS (nodemailer, requireTLS) and drops commands pipelined after STARTTLS", async () => {
    const sink = await startSink({ SINK_TLS_CERT: join(dir, "tls.crt"), SINK_TLS_KEY: join(dir, "tls.key") });
    try {
      const ehlo = await RawSmtp.open(sink.smtpPort);
      expect(await ehlo.hello()).toMatch(/^250[- ]STARTTLS\r?$/m);
      ehlo.close();
      // swaks needs Net::SSLeay for TLS, which Debian's swaks package does not pull in; nodemailer does STARTTLS.
      const transport = nodemailer.createTransport({
        host: "127.0.0.1",
        port: sink.smtpPort,
        secure: false,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
      });
      const info = await transport.sendMail({ from: "me@tls.test", to: "user@tls.test", text: "over TLS" });
      transport.close();
      expect(info.response).toMatch(/^250 2\.0\.0 Ok/);
      expect((await sink.stats()).domains["tls.test"]?.accepted).toBe(1);
      expect(sink.logs.some((l) => l.msg === "connection" && l.tls === true)).toBe(true);

      const c = await RawSmtp.open(sink.smtpPort);
      await c.hello();
      await c.write("STARTTLS\r\nMAIL FROM:<injected@evil.test>\r\n");
      expect(await c.reply()).toBe("220 2.0.0 Ready to start TLS");
      c.socket.removeAllListeners("data");
      const secure = tlsConnect({ socket: c.socket, rejectUnauthorized: false });
      const replies: string[] = [];
      secure.on("data", (b: Buffer) => replies.push(b.toString()));
      await new Promise<void>((resolve) => secure.once("secureConnect", () => resolve()));
      secure.write("EHLO again.test\r\n");
      await new Promise((r) => setTimeout(r, 200));
      const text = replies.join("");
      expect(text).toMatch(/^250-sink\.kumomta-tilt\.local Hello/);
      expect(text).not.toContain("STARTTLS");
      expect(text).not.toContain("2.1.0");
      secure.destroy();
    } finally {
      await sink.stop();
    }
  });
});

describe("STARTTLS with a certificate generated at start", () => {
  it("offers STARTTLS when SINK_STARTTLS=true and presents a self-signed certificate for SINK_HOSTNAME", async () => {
    const sink = await startSink({ SINK_STARTTLS: "true", SINK_HOSTNAME: "generated.sink.test" });
    try {
      expect(sink.logs.find((l) => l.msg === "listening")?.starttls).toBe("generated");
      const c = await RawSmtp.open(sink.smtpPort);
      await c.hello();
      expect(await c.cmd("STARTTLS")).toBe("220 2.0.0 Ready to start TLS");
      c.socket.removeAllListeners("data");
      const secure = tlsConnect({ socket: c.socket, rejectUnauthorized: false, servername: "generated.sink.test" });
      await new Promise<void>((resolve) => secure.once("secureConnect", () => resolve()));
      expect(secure.getPeerCertificate().subject.CN).toBe("generated.sink.test");
      secure.write("QUIT\r\n");
      expect((await once(secure, "data")).toString()).toBe("221 2.0.0 Bye\r\n");
      secure.destroy();
      const transport = nodemailer.createTransport({
        host: "127.0.0.1",
        port: sink.smtpPort,
        requireTLS: true,
        tls: { rejectUnauthorized: false },
      });
      await transport.sendMail({ from: "me@gen.test", to: "you@gen.test", text: "hi" });
      transport.close();
      const stats = await sink.stats();
      expect(stats.domains["gen.test"]?.accepted).toBe(1);
      expect(stats.connections).toMatchObject({ total: 2, tls: 2 });
      expect(await (await sink.http("/metrics")).text()).toMatch(/^sink_connections_tls_total 2$/m);
    } finally {
      await sink.stop();
    }
  });
});

describe("logs", () => {
  it("write at most one structured line per connection, without local parts or message content", async () => {
    const sink = await startSink();
    for (let i = 0; i < 3; i++) {
      const c = await RawSmtp.open(sink.smtpPort);
      await c.hello();
      await c.cmd("MAIL FROM:<very-private-sender@log.test>");
      await c.cmd("RCPT TO:<very-private-rcpt@log.test>");
      await c.cmd("DATA");
      await c.cmd("Subject: confidential-subject\r\n\r\nconfidential-body\r\n.");
      await c.cmd("QUIT");
      await c.closedByServer();
    }
    await sink.stop();
    const lines = sink.logs.filter((l) => l.msg === "connection");
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ peer: "127.0.0.1", messages: 1, reason: "quit" });
    const all = JSON.stringify(sink.logs);
    for (const secret of ["very-private", "confidential"]) expect(all).not.toContain(secret);
  });
});
