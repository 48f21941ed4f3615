/** The SMTP server side over real TCP, with real clients: Postfix smtp-source, swaks, nodemailer and raw bytes. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";
import { RawSmtp, type RunningSink, rssKiB, startSink } from "./helpers.ts";

const run = promisify(execFile);
let sink: RunningSink;

beforeAll(async () => {
  sink = await startSink({
    SINK_MAX_MESSAGE_SIZE: "1048576",
    SINK_MAX_RECIPIENTS: "5",
    SINK_MAX_LINE_LENGTH: "1024",
    SINK_IDLE_TIMEOUT_MS: "4000",
    SINK_HOSTNAME: "sink.test",
  });
});
afterAll(async () => {
  expect(await sink.stop()).toBe(0);
});

describe("real clients", () => {
  beforeAll(() => {
    requireTool("/usr/sbin/smtp-source", HOW_TO_GET.postfix);
    requireTool("swaks", HOW_TO_GET.swaks);
  });

  it("Postfix smtp-source: every message of 5 reused sessions is accepted and counted", async () => {
    const before = (await sink.stats()).messages.accepted;
    await run("/usr/sbin/smtp-source", [
      "-s",
      "5",
      "-m",
      "300",
      "-l",
      "2048",
      "-d",
      "-t",
      "rcpt@source.test",
      `127.0.0.1:${sink.smtpPort}`,
    ]);
    const after = await sink.stats();
    expect(after.messages.accepted - before).toBe(300);
    expect(after.domains["source.test"]?.accepted).toBe(300);
  });

  it("swaks with PIPELINING sees the advertised extensions and a queued reply", async () => {
    const { stdout } = await run("swaks", [
      "--server",
      `127.0.0.1:${sink.smtpPort}`,
      "--pipeline",
      "--to",
      "user@swaks.test",
      "--from",
      "me@swaks.test",
      "--body",
      "8-bit body: héllo wörld",
    ]);
    for (const ext of ["PIPELINING", "SIZE 1048576", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES"]) {
      expect(stdout).toContain(`250-${ext}`.replace("250-ENHANCEDSTATUSCODES", "250 ENHANCEDSTATUSCODES"));
    }
    expect(stdout).not.toContain("STARTTLS");
    expect(stdout).toMatch(/<-\s+250 2\.0\.0 Ok: queued/);
    expect((await sink.stats()).domains["swaks.test"]?.accepted).toBe(1);
  });

  it("nodemailer: UTF-8 envelope with SMTPUTF8, 8-bit body, and dot-stuffed lines as one message each", async () => {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: sink.smtpPort,
      secure: false,
      ignoreTLS: true,
    });
    const before = await sink.stats();
    const info = await transport.sendMail({
      envelope: { from: "jöran@bücher.example", to: ["josé@exämple.test"] },
      from: "jöran@bücher.example",
      to: "josé@exämple.test",
      subject: "ünïcode",
      text: "first\n.\n..\n.hidden\nlast line without newline",
    });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok/);
    await transport.sendMail({ from: "a@b.test", to: "c@dots.test", text: ".\r\n.\r\n..." });
    transport.close();
    const after = await sink.stats();
    expect(after.messages.accepted - before.messages.accepted).toBe(2);
    // nodemailer sends the domain as an A-label and the UTF-8 local part under SMTPUTF8.
    expect(after.domains["xn--exmple-cua.test"]?.accepted).toBe(1);
    expect(after.domains["dots.test"]?.accepted).toBe(1);
  });
});

describe("protocol details (raw bytes)", () => {
  it("answers a pipelined group in order, in one batch, and treats bytes after DATA as message data", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    expect(await c.hello()).toContain("250-PIPELINING");
    const chunks: string[] = [];
    c.socket.on("data", (b: Buffer) => chunks.push(b.toString()));
    // kumod's shape: RSET + MAIL + RCPT(s) + DATA in one write, then body and dot in one write.
    await c.write(
      "RSET\r\nMAIL FROM:<a@pipe.test> BODY=8BITMIME\r\nRCPT TO:<b@pipe.test>\r\nRCPT TO:<c@pipe.test>\r\nDATA\r\n",
    );
    expect(await c.replies(5)).toEqual([
      "250 2.0.0 Ok",
      "250 2.1.0 Ok",
      "250 2.1.5 Ok",
      "250 2.1.5 Ok",
      "354 End data with <CR><LF>.<CR><LF>",
    ]);
    expect(chunks).toHaveLength(1);
    // Body, terminator and the next transaction's commands in a single write.
    await c.write(
      "Subject: x\r\n\r\nbody\r\n.\r\nRSET\r\nMAIL FROM:<a@pipe.test>\r\nRCPT TO:<d@pipe.test>\r\nDATA\r\n.\r\n",
    );
    expect(await c.replies(6)).toEqual([
      "250 2.0.0 Ok: queued",
      "250 2.0.0 Ok",
      "250 2.1.0 Ok",
      "250 2.1.5 Ok",
      "354 End data with <CR><LF>.<CR><LF>",
      "250 2.0.0 Ok: queued",
    ]);
    expect((await sink.stats()).domains["pipe.test"]?.accepted).toBe(3);
    expect(await c.cmd("QUIT")).toBe("221 2.0.0 Bye");
    expect(await c.closedByServer()).toBe(true);
  });

  it("finds the end of data when the terminator is split across reads at every byte offset", async () => {
    const message = "Subject: split\r\n\r\n..dot\r\nend\r\n.\r\n";
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    const before = (await sink.stats()).domains["split.test"]?.accepted ?? 0;
    for (let cut = 1; cut < message.length; cut++) {
      expect(await c.cmd("MAIL FROM:<a@split.test>")).toBe("250 2.1.0 Ok");
      expect(await c.cmd("RCPT TO:<b@split.test>")).toBe("250 2.1.5 Ok");
      expect(await c.cmd("DATA")).toMatch(/^354 /);
      await c.write(message.slice(0, cut));
      await new Promise((r) => setTimeout(r, 5));
      await c.write(message.slice(cut));
      expect(await c.reply(), `cut at ${cut}`).toBe("250 2.0.0 Ok: queued");
    }
    c.close();
    expect((await sink.stats()).domains["split.test"]?.accepted).toBe(before + message.length - 1);
  });

  it("reassembles command lines split across reads while other connections are read in between", async () => {
    const [a, b] = [await RawSmtp.open(sink.smtpPort), await RawSmtp.open(sink.smtpPort)];
    await a.hello();
    await b.hello();
    const line = "MAIL FROM:<first-half@interleave.test>";
    for (let cut = 1; cut < line.length; cut += 7) {
      await a.write(line.slice(0, cut));
      expect(await b.cmd(`NOOP ${"n".repeat(cut)}`)).toBe("250 2.0.0 Ok");
      expect(await a.cmd(line.slice(cut))).toBe("250 2.1.0 Ok");
      expect(await a.cmd("RSET")).toBe("250 2.0.0 Ok");
    }
    a.close();
    b.close();
  });

  it("enforces SIZE: 552 at MAIL for a declared size, 552 after the dot for a larger body, session goes on", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    expect(await c.cmd("MAIL FROM:<a@size.test> SIZE=1048577")).toMatch(/^552 5\.3\.4 /);
    expect(await c.cmd("MAIL FROM:<a@size.test> SIZE=1000")).toBe("250 2.1.0 Ok");
    expect(await c.cmd("RCPT TO:<b@size.test>")).toBe("250 2.1.5 Ok");
    expect(await c.cmd("DATA")).toMatch(/^354 /);
    const before = rssKiB(sink.proc.pid as number);
    const line = `${"x".repeat(998)}\r\n`;
    const chunk = line.repeat(1024); // 1 MiB
    for (let i = 0; i < 128; i++) await c.write(chunk);
    await c.write(".\r\n");
    expect(await c.reply(20_000)).toMatch(/^552 5\.3\.4 Message size exceeds/);
    // 128 MiB went through without being kept (what grows is transient read buffers awaiting GC).
    expect(rssKiB(sink.proc.pid as number) - before).toBeLessThan(48 * 1024);
    expect(await c.cmd("MAIL FROM:<a@size.test>")).toBe("250 2.1.0 Ok");
    expect(await c.cmd("RCPT TO:<b@size.test>")).toBe("250 2.1.5 Ok");
    expect(await c.cmd("DATA")).toMatch(/^354 /);
    expect(await c.cmd(`${line.repeat(1000)}.`)).toBe("250 2.0.0 Ok: queued");
    const stats = await sink.stats();
    // The MAIL-stage refusal has no recipient yet: it counts as a bounced message, not as a domain's recipient.
    expect(stats.domains["size.test"]).toEqual({ accepted: 1, deferred: 0, bounced: 1 });
    expect(stats.messages.bounced).toBe(2);
    c.close();
  });

  it("accepts UTF-8 envelopes under SMTPUTF8 and refuses them without it", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    expect(await c.cmd("MAIL FROM:<jöran@bücher.example>")).toMatch(/^553 5\.6\.7 /);
    expect(await c.cmd("MAIL FROM:<jöran@bücher.example> SMTPUTF8 BODY=8BITMIME")).toBe("250 2.1.0 Ok");
    expect(await c.cmd("RCPT TO:<josé@exämple.test>")).toBe("250 2.1.5 Ok");
    expect(await c.cmd("DATA")).toMatch(/^354 /);
    await c.write(Buffer.from([0xc3, 0xa9, 0xff, 0x00, 0x80, 13, 10]));
    expect(await c.cmd(".")).toBe("250 2.0.0 Ok: queued");
    expect((await sink.stats()).domains["exämple.test"]?.accepted).toBe(1);
    c.close();
  });

  it("resets with RSET between messages and enforces command order", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.reply();
    expect(await c.cmd("MAIL FROM:<a@order.test>")).toMatch(/^503 5\.5\.1 .*HELO/);
    expect(await c.cmd("HELO client.test")).toBe("250 sink.test");
    expect(await c.cmd("RCPT TO:<b@order.test>")).toMatch(/^503 5\.5\.1 .*MAIL/);
    expect(await c.cmd("DATA")).toMatch(/^503 5\.5\.1 /);
    expect(await c.cmd("MAIL FROM:<a@order.test>")).toBe("250 2.1.0 Ok");
    expect(await c.cmd("MAIL FROM:<a@order.test>")).toMatch(/^503 5\.5\.1 .*nested/);
    expect(await c.cmd("DATA")).toMatch(/^554 5\.5\.1 .*no valid recipients/);
    expect(await c.cmd("RCPT TO:<b@order.test>")).toBe("250 2.1.5 Ok");
    expect(await c.cmd("RSET")).toBe("250 2.0.0 Ok");
    expect(await c.cmd("RCPT TO:<b@order.test>")).toMatch(/^503 /);
    expect(await c.cmd("VRFY someone")).toMatch(/^252 /);
    expect(await c.cmd("NOOP")).toBe("250 2.0.0 Ok");
    expect(await c.cmd("HELP")).toMatch(/^214 /);
    expect(await c.cmd("BDAT 10 LAST")).toMatch(/^502 /);
    expect(await c.cmd("STARTTLS")).toMatch(/^502 /);
    expect(await c.cmd("EHLO")).toMatch(/^501 /);
    c.close();
  });

  it("limits recipients per message (452) and command line length (500), and keeps serving", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    await c.cmd("MAIL FROM:<a@limits.test>");
    const rcpts = Array.from({ length: 7 }, (_, i) => `RCPT TO:<r${i}@limits.test>\r\n`).join("");
    await c.write(rcpts);
    const replies = await c.replies(7);
    expect(replies.slice(0, 5).every((r) => r === "250 2.1.5 Ok")).toBe(true);
    expect(replies.slice(5)).toEqual(["452 4.5.3 Error: too many recipients", "452 4.5.3 Error: too many recipients"]);
    expect(await c.cmd(`NOOP ${"y".repeat(5000)}`)).toBe("500 5.5.2 Error: line too long");
    expect(await c.cmd("DATA")).toMatch(/^354/);
    expect(await c.cmd(".")).toBe("250 2.0.0 Ok: queued");
    const stats = await sink.stats();
    expect(stats.domains["limits.test"]).toEqual({ accepted: 5, deferred: 2, bounced: 0 });
    c.close();
  });

  it("closes idle connections with 421 after SINK_IDLE_TIMEOUT_MS", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    const t0 = Date.now();
    expect(await c.reply(10_000)).toMatch(/^421 4\.4\.2 /);
    expect(Date.now() - t0).toBeGreaterThan(3000);
    expect(await c.closedByServer()).toBe(true);
  });
});

describe("connection limit", () => {
  it("refuses connections over SINK_MAX_CONNECTIONS with 421 and serves again when one closes", async () => {
    const small = await startSink({ SINK_MAX_CONNECTIONS: "3" });
    try {
      const open = await Promise.all([1, 2, 3].map(() => RawSmtp.open(small.smtpPort)));
      for (const c of open) expect(await c.reply()).toMatch(/^220 /);
      const extra = await RawSmtp.open(small.smtpPort);
      expect(await extra.reply()).toMatch(/^421 4\.7\.0 Too many connections/);
      expect(await extra.closedByServer()).toBe(true);
      open[0]?.close();
      await new Promise((r) => setTimeout(r, 100));
      const again = await RawSmtp.open(small.smtpPort);
      expect(await again.reply()).toMatch(/^220 /);
      for (const c of [...open, again]) c.close();
    } finally {
      await small.stop();
    }
  });
});
