import { describe, expect, it } from "vitest";
import { type FakeKumod, fakeKumods } from "./fake-kumod.ts";
import { closedUrl, inject, summaryOf } from "./run-inject.ts";

/**
 * The injector against a kumod that restarts mid-run the way the real one does: 503 "Error: shutting down" for a
 * while, then no listener (connection refused), then back on the same port. Accepted counts must match what the
 * server spooled exactly: nothing lost, nothing counted twice, nothing refused counted as accepted.
 */
const kumod = fakeKumods();

const RESTART_FLAGS = ["--restart-budget", "5s", "--json", "--no-progress"];

function spooled(k: FakeKumod): string[] {
  return k.requests.filter((q) => q.status === 200).flatMap((q) => q.recipients);
}

describe("a kumod restarting mid-run", () => {
  it("is waited for within --restart-budget: every recipient accepted exactly once", async () => {
    const k = await kumod();
    const restart = k.restart({ afterAccepted: 600, sheddingMs: 500, goneMs: 1200 });
    const r = await inject(
      ["--count", "2000", "--batch", "10", "--rate", "1000", "--restart-budget", "5s", "--json", "--no-progress"],
      { KUMO_HTTP_URL: k.url },
    );
    const times = await restart;
    expect(r.exitCode, r.stderr).toBe(0);
    const all = spooled(k);
    expect(all).toHaveLength(2000);
    expect(new Set(all).size).toBe(2000);
    const s = summaryOf(r.stdout);
    expect(s.recipients).toMatchObject({ sent: 2000, accepted: 2000, failed: 0, unknown: 0 });
    // Both phases were seen and retried: 503s while shutting down, refusals while gone.
    expect(k.requests.some((q) => q.status === 503)).toBe(true);
    expect(s.requests.retries).toBeGreaterThan(0);
    // Retried attempts are not failures: the summary lists no error.
    expect(s.errors).toEqual([]);
    expect(s.targets).toEqual([
      {
        url: k.url,
        requests: { sent: expect.any(Number), ok: 200, unavailable: expect.any(Number) },
        recipients: { accepted: 2000, failed: 0 },
      },
    ]);
    expect(s.targets[0]?.requests.unavailable).toBe((s.targets[0]?.requests.sent ?? 0) - 200);
    // Nothing was accepted while the server was down.
    expect(k.requests.filter((q) => q.status === 200 && q.at > times.sheddingFrom && q.at < times.backFrom)).toEqual(
      [],
    );
    expect(r.stderr).toContain(`waiting for kumod ${k.url}: 503 Error: shutting down`);
    expect(r.stderr).toContain("--restart-budget 5s");
    expect(r.stderr).toMatch(new RegExp(`kumod ${k.url} answers again after \\d`));
  });

  it("moves batches to another kumod while one restarts, and counts per kumod exactly", async () => {
    const a = await kumod();
    const b = await kumod();
    const restart = a.restart({ afterAccepted: 200, sheddingMs: 500, goneMs: 1500 });
    const r = await inject(
      ["--url", `${a.url},${b.url}`, "--count", "6000", "--batch", "10", "--rate", "1000"].concat(RESTART_FLAGS),
    );
    const times = await restart;
    expect(r.exitCode, r.stderr).toBe(0);
    const all = [...spooled(a), ...spooled(b)];
    expect(all).toHaveLength(6000);
    expect(new Set(all).size).toBe(6000);
    const s = summaryOf(r.stdout);
    expect(s.url).toBe(`${a.url},${b.url}`);
    expect(s.recipients).toMatchObject({ sent: 6000, accepted: 6000, failed: 0, unknown: 0 });
    expect(s.targets.map((t) => [t.url, t.recipients.accepted])).toEqual([
      [a.url, spooled(a).length],
      [b.url, spooled(b).length],
    ]);
    expect(s.targets[0]?.requests.unavailable).toBeGreaterThan(0);
    expect(s.targets[1]?.requests.unavailable).toBe(0);
    // While a was down (2 s at 100 requests/s), b took the batches instead of the run waiting.
    const during = b.requests.filter((q) => q.at > times.sheddingFrom + 100 && q.at < times.backFrom - 100);
    expect(during.length).toBeGreaterThan(80);
    // a was back in turn after its restart (probed at least every 2 s, so well before the 6 s run ends).
    expect(a.requests.some((q) => q.status === 200 && q.at > times.backFrom)).toBe(true);
    expect(r.stderr).toContain("the other kumods take the batches meanwhile");
  });

  it("stops at once on a kumod in --url that never answered and refuses: a wrong URL, not a restart", async () => {
    const k = await kumod();
    const wrong = await closedUrl();
    const r = await inject(["--url", `${k.url},${wrong}`, "--count", "100", "--batch", "10", "--concurrency", "1"]);
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toContain(`error: cannot reach kumod at ${wrong} (ECONNREFUSED)`);
    expect(k.recipientsAccepted).toBe(10);
  });

  it("gives up when kumod still answers 503 after --restart-budget: exit 8, the flag named", async () => {
    const k = await kumod();
    void k.restart({ afterAccepted: 100, sheddingMs: 60_000, goneMs: 0 });
    const started = Date.now();
    const r = await inject(["--count", "1000", "--batch", "10", "--rate", "500", "--restart-budget", "2s", "--json"], {
      KUMO_HTTP_URL: k.url,
    });
    expect(r.exitCode).toBe(8);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(r.stderr).toMatch(
      /^error: kumod answered 503 for [\d.]+ s, longer than --restart-budget 2s \(\d+ attempts\): Error: shutting down$/m,
    );
    expect(r.stderr).toMatch(/^hint: .*raise --restart-budget/m);
    const s = summaryOf(r.stdout);
    expect(s.recipients.accepted).toBe(spooled(k).length);
    expect(s.recipients.unknown).toBe(0);
    expect(s.recipients.accepted + s.recipients.failed).toBe(s.recipients.sent);
  });

  it("gives up when kumod stays away after --restart-budget: exit 4, the flag named", async () => {
    const k = await kumod();
    const restart = k.restart({ afterAccepted: 100, sheddingMs: 200, goneMs: Number.POSITIVE_INFINITY });
    const r = await inject(["--count", "1000", "--batch", "10", "--rate", "500", "--restart-budget", "2s", "--json"], {
      KUMO_HTTP_URL: k.url,
    });
    await restart;
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(
      new RegExp(
        `^error: cannot reach kumod at ${k.url} \\(ECONNREFUSED\\) for [\\d.]+ s, longer than --restart-budget 2s$`,
        "m",
      ),
    );
    const s = summaryOf(r.stdout);
    expect(s.recipients.accepted).toBe(spooled(k).length);
  });
});

describe("a connection lost after the request was sent", () => {
  it("is resent; if kumod had spooled it, the summary says those recipients may be there twice", async () => {
    const k = await kumod({ dropAfterSpool: [1] });
    const r = await inject(["--count", "30", "--batch", "10", "--concurrency", "1", "--json"], {
      KUMO_HTTP_URL: k.url,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    // The server holds batch 2 twice; the run counts it accepted once and flags it.
    expect(spooled(k)).toHaveLength(40);
    expect(new Set(spooled(k)).size).toBe(30);
    const s = summaryOf(r.stdout);
    expect(s.recipients).toEqual({ sent: 30, accepted: 30, failed: 0, unknown: 0, maybe_duplicated: 10 });
    expect(s.requests).toMatchObject({ sent: 3, ok: 3, retries: 1 });
  });

  it("is counted as unknown, neither accepted nor failed, when the batch is given up", async () => {
    const k = await kumod();
    const child = inject(
      ["--count", "200", "--batch", "10", "--concurrency", "1", "--rate", "50", "--restart-budget", "1s", "--json"],
      { KUMO_HTTP_URL: k.url },
    );
    // kumod answers at first (so a lost connection is a restart, not a wrong URL), then reads and drops everything.
    while (k.recipientsAccepted < 20) await new Promise((r) => setTimeout(r, 5));
    k.dropEverything = true;
    const r = await child;
    expect(r.exitCode).toBe(4);
    expect(r.stderr).toMatch(
      /^error: cannot reach kumod at .* \(ECONNRESET\) for [\d.]+ s, longer than --restart-budget 1s$/m,
    );
    const s = summaryOf(r.stdout);
    expect(s.recipients.accepted).toBe(spooled(k).length);
    expect(s.recipients.failed).toBe(0);
    expect(s.recipients.unknown).toBe(10 * s.requests.failed);
    expect(s.recipients.unknown).toBeGreaterThan(0);
    expect(s.recipients.accepted + s.recipients.unknown).toBe(s.recipients.sent);
  });

  it("to a kumod that never answered is fatal at once, and its recipients are unknown", async () => {
    const k = await kumod();
    k.dropEverything = true;
    const r = await inject(["--count", "10", "--json"], { KUMO_HTTP_URL: k.url });
    expect(r.exitCode).toBe(4);
    expect(k.requests).toHaveLength(1);
    expect(summaryOf(r.stdout).recipients).toEqual({
      sent: 10,
      accepted: 0,
      failed: 0,
      unknown: 10,
      maybe_duplicated: 0,
    });
  });
});
