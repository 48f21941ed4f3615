import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FakeKumod } from "./fake-kumod.ts";
import { closedUrl, inject, ROOT, summaryOf } from "./run-inject.ts";
import { type RunningSink, startSink } from "./sink-process.ts";

/**
 * --verify end to end with the project's REAL sink: a stand-in kumod accepts the injection and then delivers every
 * accepted recipient over SMTP (nodemailer) to the sink, retrying 4xx answers the way kumod retries deferrals.
 * The sink runs its default scenario, as `npm run sink` and `tilt up` do: like KumoMTA's smart sink it honours
 * address directives, so local parts with "permfail" bounce and with "tempfail" (`--local-part tempfail`) defer.
 */
let sink: RunningSink;
let stopped = false;
let transport: nodemailer.Transporter;

async function deliver(email: string): Promise<void> {
  while (!stopped) {
    try {
      await transport.sendMail({
        envelope: { from: "sender@example.org", to: [email] },
        raw: `From: sender@example.org\r\nTo: ${email}\r\nSubject: verify\r\n\r\nhello\r\n`,
      });
      return;
    } catch (err) {
      const code = (err as { responseCode?: number }).responseCode ?? 0;
      if (code < 400 || code >= 500) return;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

beforeAll(async () => {
  sink = await startSink();
  transport = nodemailer.createTransport({
    host: "127.0.0.1",
    port: sink.smtpPort,
    secure: false,
    ignoreTLS: true,
    pool: true,
    maxConnections: 4,
  });
});
afterAll(async () => {
  stopped = true;
  transport?.close();
  await sink?.stop();
});

const tmp = mkdtempSync(join(tmpdir(), "verify-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const sample = JSON.parse(readFileSync(join(ROOT, "sample_http_inject_payload.json"), "utf8")) as Record<
  string,
  unknown
>;

describe("--verify against the real sink", () => {
  it("waits until every accepted recipient is delivered", async () => {
    const k = await new FakeKumod({ onAccepted: (e) => deliver(e) }).start();
    try {
      const r = await inject(["--count", "40", "--batch", "7", "--verify", "--json"], {
        KUMO_HTTP_URL: k.url,
        SINK_HTTP_URL: sink.httpUrl,
      });
      expect(r.exitCode, r.stderr).toBe(0);
      const s = summaryOf(r.stdout);
      expect(s.verify).toMatchObject({ expected: 40, delivered: 40, bounced: 0, complete: true });
    } finally {
      await k.close();
    }
  });

  it("counts bounces as settled and reports them", async () => {
    const k = await new FakeKumod({ onAccepted: (e) => deliver(e) }).start();
    const p = join(tmp, "mixed.json");
    writeFileSync(
      p,
      JSON.stringify({
        ...sample,
        recipients: [{ email: "a@example.com" }, { email: "b@example.com" }, { email: "permfail-1@example.net" }],
      }),
    );
    try {
      const r = await inject(["--payload", p, "--verify"], { KUMO_HTTP_URL: k.url, SINK_HTTP_URL: sink.httpUrl });
      expect(r.exitCode, r.stderr).toBe(0);
      expect(r.stdout).toContain("3 of 3 accepted recipients all settled");
      expect(r.stdout).toContain("delivered 2, bounced 1");
    } finally {
      await k.close();
    }
  });

  it("times out with exit code 12 while the sink keeps deferring, and counts the deferral attempts", async () => {
    const k = await new FakeKumod({ onAccepted: (e) => deliver(e) }).start();
    try {
      const r = await inject(
        ["--count", "3", "--local-part", "tempfail", "--verify", "--verify-timeout", "1500ms", "--json"],
        { KUMO_HTTP_URL: k.url, SINK_HTTP_URL: sink.httpUrl },
      );
      expect(r.exitCode).toBe(12);
      const s = summaryOf(r.stdout);
      expect(s.verify).toMatchObject({ expected: 3, delivered: 0, bounced: 0, complete: false });
      expect(s.verify?.deferral_attempts).toBeGreaterThanOrEqual(3);
      expect(r.stderr).toContain("did not reach the sink within 1.5 s");
    } finally {
      await k.close();
    }
  });

  it("refuses to start when the sink is unreachable, and sends nothing", async () => {
    const k = await new FakeKumod().start();
    try {
      const noSink = await closedUrl();
      const r = await inject(["--verify"], { KUMO_HTTP_URL: k.url, SINK_HTTP_URL: noSink });
      expect(r.exitCode).toBe(11);
      expect(r.stderr).toContain(`cannot reach the sink at ${noSink} (ECONNREFUSED)`);
      expect(r.stderr).toContain("Nothing was sent");
      expect(k.requests).toHaveLength(0);
    } finally {
      await k.close();
    }
  });
});
