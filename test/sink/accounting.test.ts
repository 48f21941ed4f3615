/** Exact accounting: concurrent real clients, and the counters agree with what they were told. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, expect, it } from "vitest";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";
import { type RunningSink, startSink } from "./helpers.ts";

const run = promisify(execFile);
let sink: RunningSink;

beforeAll(async () => {
  sink = await startSink({ SINK_LOG_CONNECTIONS: "false" });
});
afterAll(async () => {
  await sink.stop();
});

function metric(text: string, name: string): number {
  const m = text.match(new RegExp(`^${name.replace(/[{}"]/g, "\\$&")} (\\d+)$`, "m"));
  if (!m) throw new Error(`metric ${name} missing`);
  return Number(m[1]);
}

it("counts exactly N messages from concurrent smtp-source, nodemailer and swaks clients", async () => {
  requireTool("/usr/sbin/smtp-source", HOW_TO_GET.postfix);
  requireTool("swaks", HOW_TO_GET.swaks);
  const target = `127.0.0.1:${sink.smtpPort}`;
  const sources = [
    run("/usr/sbin/smtp-source", ["-s", "10", "-m", "3000", "-l", "1024", "-d", "-t", "a@one.test", target]),
    run("/usr/sbin/smtp-source", ["-s", "7", "-m", "1111", "-l", "20000", "-t", "b@two.test", target]),
    run("/usr/sbin/smtp-source", ["-s", "3", "-m", "500", "-r", "3", "-d", "-t", "c@three.test", target]),
  ];
  const transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: sink.smtpPort,
    pool: true,
    maxConnections: 5,
    ignoreTLS: true,
  });
  const mails = Array.from({ length: 200 }, (_, i) =>
    transport.sendMail({ from: "x@nm.test", to: [`r${i}@four.test`, `s${i}@five.test`], text: `message ${i}\n.\n` }),
  );
  const swaks = Array.from({ length: 5 }, () =>
    run("swaks", ["--server", target, "--pipeline", "--to", "d@six.test", "--from", "e@six.test"]),
  );
  await Promise.all([...sources, ...mails, ...swaks]);
  transport.close();

  const n = 3000 + 1111 + 500 + 200 + 5;
  const recipients = 3000 + 1111 + 500 * 3 + 200 * 2 + 5;
  const stats = await sink.stats();
  expect(stats.messages).toEqual({ accepted: n, deferred: 0, bounced: 0 });
  expect(stats.recipients.accepted).toBe(recipients);
  expect(stats.replies["data:250"]).toBe(n);
  expect(stats.domains["one.test"]?.accepted).toBe(3000);
  expect(stats.domains["four.test"]?.accepted).toBe(200);
  const metrics = await (await sink.http("/metrics")).text();
  expect(metric(metrics, "sink_messages_accepted_total")).toBe(n);
  expect(metric(metrics, "sink_recipients_accepted_total")).toBe(recipients);
  expect(metric(metrics, "sink_bytes_accepted_total")).toBe(stats.bytes.accepted);
  expect(metric(metrics, 'sink_domain_recipients_total{domain="two.test",outcome="accepted"}')).toBe(1111);
  expect(metric(metrics, "sink_connections_total")).toBe(stats.connections.total);
});

it("bounds per-domain label cardinality with an _other bucket", async () => {
  const small = await startSink({ SINK_MAX_DOMAINS: "3", SINK_LOG_CONNECTIONS: "false" });
  try {
    const transport = nodemailer.createTransport({ host: "127.0.0.1", port: small.smtpPort, ignoreTLS: true });
    await transport.sendMail({
      from: "x@a.test",
      to: ["1@d1.test", "2@d2.test", "3@d3.test", "4@d4.test", "5@d5.test"],
      text: "x",
    });
    transport.close();
    const stats = await small.stats();
    expect(Object.keys(stats.domains)).toEqual(["d1.test", "d2.test", "d3.test", "_other"]);
    expect(stats.domains._other?.accepted).toBe(2);
  } finally {
    await small.stop();
  }
});
