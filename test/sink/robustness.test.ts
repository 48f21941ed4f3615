/** Malformed and hostile input: the sink answers, closes or ignores, never crashes, never grows without bound. */
import { connect, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventually, RawSmtp, type RunningSink, rssKiB, startSink } from "./helpers.ts";

let sink: RunningSink;
const rss = () => rssKiB(sink.proc.pid as number);

beforeAll(async () => {
  sink = await startSink({ SINK_LOG_CONNECTIONS: "false", SINK_MAX_ERRORS: "10" });
});
afterAll(async () => {
  expect(await sink.stop()).toBe(0);
});

async function alive(): Promise<void> {
  expect((await sink.http("/livez")).status).toBe(200);
  const c = await RawSmtp.open(sink.smtpPort);
  await c.hello();
  expect(await c.cmd("MAIL FROM:<a@alive.test>")).toBe("250 2.1.0 Ok");
  expect(await c.cmd("RCPT TO:<b@alive.test>")).toBe("250 2.1.5 Ok");
  expect(await c.cmd("DATA")).toMatch(/^354/);
  expect(await c.cmd(".")).toBe("250 2.0.0 Ok: queued");
  c.close();
}

describe("malformed input", () => {
  it("answers garbage, binary and NUL bytes with 500s and closes after too many errors", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.reply();
    await c.write(Buffer.from([0, 1, 2, 255, 254, 13, 10]));
    expect(await c.reply()).toBe("500 5.5.2 Error: command not recognized");
    await c.write("HELO \0x\r\nEH\0LO a\r\n\xff\xfe\r\n");
    const replies = await c.replies(3);
    expect(replies[0]).toMatch(/^250 /);
    expect(replies.slice(1).every((r) => r.startsWith("500 "))).toBe(true);
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) % 256;
    await c.write(junk);
    expect(await c.closedByServer()).toBe(true);
    await alive();
  });

  it("accepts bare-LF command lines but ends DATA only on CRLF.CRLF", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.reply();
    await c.write("EHLO lf.test\nMAIL FROM:<a@lf.test>\nRCPT TO:<b@lf.test>\nDATA\n");
    const replies = await c.replies(4);
    expect(replies[3]).toMatch(/^354 /);
    await c.write("line\n.\nstill data\n");
    await expect(c.reply(300)).rejects.toThrow(/no SMTP reply/);
    await c.write("\r\n.\r\n");
    expect(await c.reply()).toBe("250 2.0.0 Ok: queued");
    c.close();
  });

  it("survives an endless command line without keeping it in memory", async () => {
    const before = rss();
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    const chunk = Buffer.alloc(1 << 20, 0x41);
    for (let i = 0; i < 32; i++) await c.write(chunk);
    expect(rss() - before).toBeLessThan(40 * 1024);
    expect(await c.cmd("")).toBe("500 5.5.2 Error: line too long");
    expect(await c.cmd("NOOP")).toBe("250 2.0.0 Ok");
    c.close();
  });

  it("answers commands in random order exactly as the state machine says", async () => {
    const commands = ["MAIL FROM:<a@chaos.test>", "RCPT TO:<b@chaos.test>", "DATA", "RSET", "EHLO x", "NOOP", "HELO y"];
    const c = await RawSmtp.open(sink.smtpPort);
    await c.reply();
    let seed = 3;
    let script = "";
    const expected: string[] = [];
    let helo = false;
    let mail = false;
    let rcpt = false;
    for (let i = 0; i < 300; i++) {
      seed = (seed * 48271) % 2147483647;
      const cmd = commands[seed % commands.length] as string;
      script += `${cmd}\r\n`;
      const verb = cmd.slice(0, 4);
      if (verb === "MAIL") {
        expected.push(!helo || mail ? "503" : "250");
        if (helo) mail = true;
      } else if (verb === "RCPT") {
        expected.push(mail ? "250" : "503");
        if (mail) rcpt = true;
      } else if (verb === "DATA") {
        if (!mail) expected.push("503");
        else if (!rcpt) expected.push("554");
        else {
          expected.push("354", "250");
          script += "x\r\n.\r\n";
          mail = false;
          rcpt = false;
        }
      } else {
        expected.push("250");
        if (verb !== "NOOP") {
          mail = false;
          rcpt = false;
        }
        if (verb === "EHLO" || verb === "HELO") helo = true;
      }
    }
    await c.write(`${script}QUIT\r\n`);
    const replies = await c.replies(expected.length + 1);
    expect(replies.map((r) => r.slice(0, 3))).toEqual([...expected, "221"]);
  });

  it("drops clients disconnecting mid-DATA without counting their messages", async () => {
    const before = await sink.stats();
    const active = before.connections.active;
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const c = await RawSmtp.open(sink.smtpPort);
        await c.hello();
        await c.write(`MAIL FROM:<a@abrupt.test>\r\nRCPT TO:<b${i}@abrupt.test>\r\nDATA\r\n`);
        await c.replies(3);
        await c.write("Subject: half\r\n\r\nhalf a message\r\n.");
        c.socket.destroy();
      }),
    );
    await eventually(async () => (await sink.stats()).connections.active === active);
    expect((await sink.stats()).messages.accepted).toBe(before.messages.accepted);
  });

  it("closes a client that never reads its replies once output backs up", async () => {
    const c = await RawSmtp.open(sink.smtpPort);
    await c.hello();
    c.socket.pause();
    const noops = Buffer.from("NOOP\r\n".repeat(100_000));
    const before = rss();
    let closed = false;
    c.socket.on("close", () => {
      closed = true;
    });
    for (let i = 0; i < 40 && !closed; i++) {
      c.socket.write(noops);
      await new Promise((r) => setTimeout(r, 20));
    }
    await eventually(() => closed, 10_000);
    expect(rss() - before).toBeLessThan(60 * 1024);
    await alive();
  });
});

describe("many idle connections", () => {
  it("holds 3,000 idle connections with bounded memory and keeps serving", async () => {
    const before = rss();
    const active = (await sink.stats()).connections.active;
    const sockets: Socket[] = [];
    for (let batch = 0; batch < 30; batch++) {
      const opened = await Promise.all(
        Array.from(
          { length: 100 },
          () =>
            new Promise<Socket>((resolve, reject) => {
              const s = connect(sink.smtpPort, "127.0.0.1", () => resolve(s));
              s.on("error", reject);
            }),
        ),
      );
      sockets.push(...opened);
    }
    await eventually(async () => (await sink.stats()).connections.active === active + 3000, 10_000);
    const grown = rss() - before;
    // Measured at ~7 KiB per idle connection (~21 MiB for 3,000); the bound leaves room for GC timing.
    expect(grown).toBeLessThan(60 * 1024);
    await alive();
    for (const s of sockets) s.destroy();
    await eventually(async () => (await sink.stats()).connections.active === active, 10_000);
  });
});
