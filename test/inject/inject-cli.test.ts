import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { fakeKumods } from "./fake-kumod.ts";
import { inject, ROOT, summaryOf } from "./run-inject.ts";

const kumod = fakeKumods();

/** Other servers on loopback (not kumod), closed with their connections after each test like the fake kumods. */
const others: { server: net.Server; sockets: Set<net.Socket> }[] = [];
async function listen(server: net.Server): Promise<string> {
  const sockets = new Set<net.Socket>();
  server.on("connection", (s: net.Socket) => sockets.add(s));
  others.push({ server, sockets });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
afterEach(async () => {
  for (const { server, sockets } of others.splice(0)) {
    for (const s of sockets) s.destroy();
    await new Promise((r) => server.close(r));
  }
});

const tmp = mkdtempSync(join(tmpdir(), "inject-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
function payloadFile(name: string, content: string): string {
  const p = join(tmp, name);
  writeFileSync(p, content);
  return p;
}
const sample = JSON.parse(readFileSync(join(ROOT, "sample_http_inject_payload.json"), "utf8")) as Record<
  string,
  unknown
>;

describe("recipient and request counts", () => {
  it.each([
    [1000, 100, 10],
    [1001, 100, 11],
    [7, 3, 3],
    [250, 1000, 1],
    [1, 1, 1],
  ])("--count %i --batch %i sends exactly %i requests and every recipient once", async (count, batch, requests) => {
    const k = await kumod();
    const r = await inject(["--count", String(count), "--batch", String(batch), "--json"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(k.requests).toHaveLength(requests);
    const all = k.requests.flatMap((q) => q.recipients);
    expect(all).toHaveLength(count);
    expect(new Set(all).size).toBe(count);
    expect(Math.max(...k.requests.map((q) => q.recipients.length))).toBe(Math.min(batch, count));
    const s = summaryOf(r.stdout);
    expect(s.requests).toEqual({ sent: requests, ok: requests, failed: 0, retries: 0 });
    expect(s.recipients).toEqual({ sent: count, accepted: count, failed: 0, unknown: 0, maybe_duplicated: 0 });
  });

  it("spreads generated recipients over weighted domains exactly", async () => {
    const k = await kumod();
    const r = await inject(["--count", "1000", "--domains", "a.example,b.example:3", "--batch", "50"], {
      KUMO_HTTP_URL: k.url,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const all = k.requests.flatMap((q) => q.recipients);
    expect(all.filter((e) => e.endsWith("@a.example"))).toHaveLength(250);
    expect(all.filter((e) => e.endsWith("@b.example"))).toHaveLength(750);
  });

  it("sends the default payload file as is when --count is not given", async () => {
    const k = await kumod();
    const r = await inject([], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(k.requests).toHaveLength(1);
    expect(k.requests[0]?.body).toEqual(sample);
    expect(r.stdout).toContain("1 accepted, 0 failed");
  });

  it("keeps the payload's content and the first recipient's extra fields for generated recipients", async () => {
    const k = await kumod();
    const r = await inject(["--count", "3", "--deferred-spool", "--local-part", "load.", "--domains", "x.example"], {
      KUMO_HTTP_URL: k.url,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const body = k.requests[0]?.body as Record<string, unknown>;
    expect(body.content).toEqual(sample.content);
    expect(body.deferred_spool).toBe(true);
    expect(body.recipients).toEqual([
      { email: "load.0@x.example", name: "Test Recipient" },
      { email: "load.1@x.example", name: "Test Recipient" },
      { email: "load.2@x.example", name: "Test Recipient" },
    ]);
  });

  it("sends credentials from the environment (as .env provides them) as basic auth", async () => {
    const k = await kumod({ user: "alice", password: "s3cret:x" });
    const r = await inject(["--count", "5"], {
      KUMO_HTTP_URL: k.url,
      KUMO_HTTP_USER: "alice",
      KUMO_HTTP_PASSWORD: "s3cret:x",
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(k.recipientsAccepted).toBe(5);
  });
});

describe("pacing", () => {
  it("--rate holds the target within 5 % measured at the server", async () => {
    const k = await kumod();
    const rate = 1500;
    const batch = 10;
    const r = await inject(["--count", "4500", "--batch", String(batch), "--rate", String(rate), "--json"], {
      KUMO_HTTP_URL: k.url,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    const times = k.requests.map((q) => q.at).sort((a, b) => a - b);
    expect(times).toHaveLength(450);
    const spanS = ((times.at(-1) as number) - (times[0] as number)) / 1000;
    const achieved = ((times.length - 1) * batch) / spanS;
    expect(Math.abs(achieved - rate) / rate).toBeLessThan(0.05);
    // Open loop: the first and second halves run at the same pace (no burst then stall); looser than the
    // overall 5 % because each half is a shorter window on a shared machine.
    const mid = times[225] as number;
    const firstHalf = (mid - (times[0] as number)) / 1000;
    const secondHalf = ((times.at(-1) as number) - mid) / 1000;
    expect(Math.abs(firstHalf - secondHalf) / secondHalf).toBeLessThan(0.1);
    expect(summaryOf(r.stdout).rate.target_recipients_per_s).toBe(rate);
  });

  it("--duration stops starting requests after the given time", async () => {
    const k = await kumod();
    const r = await inject(["--duration", "1s", "--rate", "200", "--batch", "10", "--json"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode, r.stderr).toBe(0);
    const n = k.recipientsAccepted;
    expect(n).toBeGreaterThanOrEqual(190);
    expect(n).toBeLessThanOrEqual(210);
    expect(summaryOf(r.stdout).recipients.accepted).toBe(n);
  });
});

describe("kumod's answers", () => {
  it("retries a 503 with backoff and then succeeds", async () => {
    const k = await kumod({ script: [503, 503] });
    const r = await inject(["--count", "10", "--batch", "10", "--json"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(k.requests.map((q) => q.status)).toEqual([503, 503, 200]);
    const s = summaryOf(r.stdout);
    expect(s.requests.retries).toBe(2);
    expect(s.recipients.accepted).toBe(10);
  });

  it("reports a 503 that outlasts the retries with exit code 8", async () => {
    const k = await kumod({ script: [503, 503, 503, 503] });
    const r = await inject(["--count", "10", "--retries", "2"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(8);
    expect(k.requests).toHaveLength(3);
    expect(r.stderr).toContain("503 on 3 attempts");
    expect(r.stderr).toContain("load shedding");
  });

  it("Ctrl-C during 503 retries ends with the interrupted code, not as an exhausted 503", async () => {
    const k = await kumod({ script: Array.from({ length: 50 }, () => 503) });
    const child = inject(["--count", "10", "--retries", "20", "--json"], { KUMO_HTTP_URL: k.url });
    while (k.requests.length < 2) await new Promise((r) => setTimeout(r, 20));
    child.kill("SIGINT");
    const r = await child;
    expect(r.exitCode).toBe(130);
    const s = summaryOf(r.stdout);
    expect(s.interrupted).toBe(true);
    expect(s.requests).toMatchObject({ sent: 1, ok: 0, failed: 1 });
    expect(s.error?.message).toMatch(/^interrupted \(Ctrl-C\)/);
    expect(r.stderr).not.toContain("503 on");
  });

  it("explains a 401 and points at npm run seed", async () => {
    const k = await kumod({ user: "alice", password: "right" });
    const r = await inject(["--count", "1", "--user", "alice", "--password", "wrong"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(5);
    expect(r.stderr).toContain('credentials for user "alice"');
    expect(r.stderr).toContain("not permitted POST");
    expect(r.stderr).toContain("npm run seed");
    expect(r.stderr).toContain("tilt up");
    expect(r.stderr).not.toContain("wrong");
  });

  it("stops at a 413 and suggests a smaller --batch that fits under kumod's 2 MiB limit", async () => {
    const k = await kumod({ bodyLimit: 2 * 1024 * 1024 });
    const r = await inject(["--count", "200000", "--batch", "50000", "--concurrency", "2"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(7);
    // Stops at the first 413: only the requests already in flight were sent, not all 4.
    expect(k.requests.length).toBeLessThanOrEqual(2);
    expect(k.requests.every((q) => q.status === 413)).toBe(true);
    expect(r.stderr).toContain("length limit exceeded");
    const suggested = Number(/--batch (\d+)/.exec(r.stderr)?.[1]);
    expect(suggested).toBeGreaterThan(10_000);
    expect(suggested).toBeLessThan(50_000);
    const retry = await inject(["--count", String(suggested), "--batch", String(suggested)], { KUMO_HTTP_URL: k.url });
    expect(retry.exitCode, retry.stderr).toBe(0);
  });

  it("shows kumod's 422 text and the field it names", async () => {
    const k = await kumod({ topFields: ["envelope_sender", "content", "recipients"] });
    const r = await inject(["--count", "1", "--deferred-spool"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toContain("unknown field `deferred_spool`");
    expect(r.stderr).toContain("field: deferred_spool");
    expect(k.requests).toHaveLength(1);
  });

  it("reports a template error (422) that only kumod can detect", async () => {
    const k = await kumod();
    const bad = { ...sample, content: { ...(sample.content as object), text_body: "Hi {{ name" } };
    const r = await inject(["--payload", payloadFile("tpl.json", JSON.stringify(bad))], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(6);
    expect(r.stderr).toContain("failed to parse template");
  });

  it("counts per-recipient failures from a 200 reply, groups kumod's texts and exits 9", async () => {
    const k = await kumod({ rejectMarker: "reject" });
    const p = payloadFile(
      "three.json",
      JSON.stringify({
        ...sample,
        recipients: [{ email: "a@example.com" }, { email: "reject-1@example.com" }, { email: "reject-2@example.net" }],
      }),
    );
    const r = await inject(["--payload", p, "--json"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(9);
    const s = summaryOf(r.stdout);
    expect(s.recipients).toEqual({ sent: 3, accepted: 1, failed: 2, unknown: 0, maybe_duplicated: 0 });
    expect(s.errors).toEqual([{ text: "550 5.7.1 rejected by policy", count: 2 }]);
  });

  it("counts a 500 as a failed request, carries on, and exits 10", async () => {
    const k = await kumod({ script: [500] });
    const r = await inject(["--count", "30", "--batch", "10", "--concurrency", "1", "--json"], {
      KUMO_HTTP_URL: k.url,
    });
    expect(r.exitCode).toBe(10);
    const s = summaryOf(r.stdout);
    expect(s.requests).toMatchObject({ sent: 3, ok: 2, failed: 1 });
    expect(s.recipients).toEqual({ sent: 30, accepted: 20, failed: 10, unknown: 0, maybe_duplicated: 0 });
    expect(s.errors[0]?.text).toBe("HTTP 500: Error: scripted 500");
    expect(s.error?.message).toBe("1 of 3 requests failed: kumod answered HTTP 500: Error: scripted 500");
    expect(r.stderr).toMatch(/^error: 1 of 3 requests failed: kumod answered HTTP 500/m);
    expect(r.stderr).toMatch(/^hint: See kumod's logs/m);
  });

  it("stops at a 404 from something that is not kumod (wrong port) and says so", async () => {
    const url = await listen(
      http.createServer((_, res) => {
        res.writeHead(404, { "content-type": "text/plain" });
        res.end("Not Found");
      }),
    );
    const r = await inject(["--count", "1000", "--batch", "10", "--concurrency", "2"], { KUMO_HTTP_URL: url });
    expect(r.exitCode).toBe(10);
    expect(r.stderr).toContain(`error: ${url} answered HTTP 404 to POST /api/inject/v1 (Not Found): it is not kumod's`);
    expect(r.stderr).toMatch(/^hint: Wrong port\? .*http:\/\/localhost:8000/m);
    // Nothing was accepted: the summary says so instead of a send rate.
    expect(r.stdout).toMatch(/nothing accepted: \d+ recipients in [12] requests? failed/);
    expect(r.stdout).not.toContain("recipients/s");
  });

  it("gives up on a kumod that accepts the connection and never answers, after --timeout", async () => {
    const url = await listen(net.createServer(() => {}));
    const started = Date.now();
    const r = await inject(["--count", "1", "--timeout", "1s", "--json"], { KUMO_HTTP_URL: url });
    expect(r.exitCode).toBe(4);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.stderr).toContain(`error: kumod at ${url} did not answer a request within 1 s (--timeout)`);
    expect(r.stderr).toMatch(/^hint: Something holds that port but sends no HTTP answer/m);
    // The request went out and got no answer: kumod may still spool it, so it is neither accepted nor failed.
    expect(summaryOf(r.stdout)).toMatchObject({
      exit_code: 4,
      recipients: { sent: 1, accepted: 0, failed: 0, unknown: 1 },
    });
  });

  it("says how to fix a refused connection", async () => {
    const r = await inject(["--count", "1"], { KUMO_HTTP_URL: "http://127.0.0.1:9" });
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain("cannot reach kumod at http://127.0.0.1:9 (ECONNREFUSED)");
    expect(r.stderr).toContain("tilt up");
  });
});

describe("bad input", () => {
  it("reports malformed payload JSON with line and column and sends nothing", async () => {
    const k = await kumod();
    const p = payloadFile("broken.json", '{\n  "envelope_sender": "a@example.org",\n  "content": "x",,\n}');
    const r = await inject(["--payload", p], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("line 3, column 18");
    expect(r.stderr).toContain("Nothing was sent");
    expect(k.requests).toHaveLength(0);
  });

  it("names a field kumod would reject before sending anything", async () => {
    const k = await kumod();
    const p = payloadFile("subjekt.json", JSON.stringify({ ...sample, content: { subjekt: "x", text_body: "y" } }));
    const r = await inject(["--payload", p], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("content.subjekt: unknown field");
    expect(k.requests).toHaveLength(0);
  });

  it("reports a missing payload file, also as JSON with --json", async () => {
    const r = await inject(["--payload", join(tmp, "nope.json"), "--json"]);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toContain("cannot read payload file");
    const out = JSON.parse(r.stdout) as { exit_code: number; error: { message: string } };
    expect(out.exit_code).toBe(3);
    expect(out.error.message).toContain("nope.json");
  });

  it.each([
    [["--count", "0"], "--count must be a whole number"],
    [["--rate", "fast"], "--rate must be"],
    [["--domains", "a.example:x", "--count", "1"], "weight of a.example"],
    [["--domains", "a.example"], "add --count N"],
    [["--bogus"], "Unknown option"],
    [["--duration", "soon", "--count", "1"], "--duration must be a duration"],
    [["--timeout", "never"], "--timeout must be a duration"],
    [["--sink-url", "not a url", "--verify"], '--sink-url "not a url" is not a URL'],
    [["--url", "https://localhost:8000"], '--url "https://localhost:8000" does not start with http://'],
  ])("rejects %j with exit code 2", async (args, text) => {
    const r = await inject(args);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(text);
  });

  it("treats a sink URL from the environment that is not a URL as a usage error too (exit 2)", async () => {
    const k = await kumod();
    const r = await inject(["--verify", "--json"], { KUMO_HTTP_URL: k.url, SINK_HTTP_URL: "not a url" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('error: sink URL "not a url" is not a URL');
    expect(r.stderr).toContain("hint: Set --sink-url (or SINK_HTTP_URL");
    expect(JSON.parse(r.stdout)).toMatchObject({
      exit_code: 2,
      error: { hint: expect.stringContaining("--sink-url") },
    });
    expect(k.requests).toHaveLength(0);
  });

  it.each(["6000", "10080"])("explains a sink port fetch refuses (%s) and sends nothing (exit 2)", async (port) => {
    const k = await kumod();
    const r = await inject(["--verify", "--sink-url", `http://127.0.0.1:${port}`], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`error: fetch refuses to connect to port ${port} of http://127.0.0.1:${port}`);
    expect(r.stderr).toMatch(/^hint: Serve the sink's HTTP API on another local port/m);
    expect(r.stderr).not.toContain("TypeError");
    expect(k.requests).toHaveLength(0);
  });

  it("--help documents options, defaults, examples and exit codes", async () => {
    const r = await inject(["--help"]);
    expect(r.exitCode).toBe(0);
    for (const text of [
      "--count",
      "--batch",
      "--rate",
      "--verify-timeout",
      "--restart-budget T      how long a batch is retried while kumod restarts",
      "[default 2m]",
      "--url URL[,URL...]",
      "--timeout T             give up on a request kumod has not answered after T [default 30s]",
      "KUMO_HTTP_URL",
      "Examples:",
      "Exit codes:",
    ]) {
      expect(r.stdout).toContain(text);
    }
    for (const code of [0, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 130])
      expect(r.stdout).toMatch(new RegExp(`^ +${code}  `, "m"));
  });
});

describe("output", () => {
  it("prints the summary as one JSON object with --json", async () => {
    const k = await kumod();
    const r = await inject(["--count", "500", "--batch", "50", "--json"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const s = summaryOf(r.stdout);
    expect(Object.keys(s).sort()).toEqual(
      [
        "elapsed_s",
        "error",
        "errors",
        "exit_code",
        "interrupted",
        "latency_ms",
        "max_rss_bytes",
        "rate",
        "recipients",
        "requests",
        "targets",
        "url",
        "verify",
      ].sort(),
    );
    expect(s.targets).toEqual([
      { url: k.url, requests: { sent: 10, ok: 10, unavailable: 0 }, recipients: { accepted: 500, failed: 0 } },
    ]);
    expect(s.latency_ms.p50).toBeGreaterThan(0);
    expect(s.latency_ms.p99).toBeGreaterThanOrEqual(s.latency_ms.p50);
    expect(s.rate.recipients_per_s).toBeGreaterThan(0);
  });

  it("prints a readable summary without escape codes when not on a terminal", async () => {
    const k = await kumod();
    const r = await inject(["--count", "20", "--batch", "10"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("sent 20 recipients in 2 requests");
    expect(r.stdout).toMatch(/latency +p50 [\d.]+ ms, p95/);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: asserting that no terminal escapes leak out
    expect(r.stdout + r.stderr).not.toMatch(/\u001b\[/);
  });

  it("Ctrl-C stops sending and prints the summary of what was sent", async () => {
    const k = await kumod();
    const child = inject(["--count", "100000", "--batch", "10", "--rate", "500", "--json"], { KUMO_HTTP_URL: k.url });
    while (k.requests.length < 20) await new Promise((r) => setTimeout(r, 50));
    child.kill("SIGINT");
    const r = await child;
    expect(r.exitCode).toBe(130);
    const s = summaryOf(r.stdout);
    expect(s.interrupted).toBe(true);
    expect(s.recipients.sent).toBe(k.recipientsAccepted);
    expect(s.recipients.accepted).toBe(k.recipientsAccepted);
    expect(s.recipients.sent).toBeLessThan(100000);
    expect(r.stderr).toMatch(/^error: interrupted \(Ctrl-C\) after sending \d+ recipients/m);
  });
});
