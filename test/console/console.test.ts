/**
 * The console in a real headless Chromium (Debian's package, driven by playwright-core), fed by stand-in kumod pods
 * and tsa-daemon in their real formats and by the real sink, receiving real SMTP from nodemailer.
 */
import { mkdir } from "node:fs/promises";
import path from "node:path";
import nodemailer from "nodemailer";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getScenario, getSinkStats } from "../../scripts/lib/sink-api.ts";
import { type RunningSink, startSink } from "../inject/sink-process.ts";
import {
  type KumodMetrics,
  launchChromium,
  type RunningConsole,
  repoRoot,
  StandInKumod,
  StandInTsa,
  startConsole,
  tsaGmailSuspension,
  tsaYahooRateOverride,
} from "./stand-ins.ts";

const ARTIFACTS = path.join(repoRoot, "test-artifacts");
const SINK_SITE = "mx_list:sink.kumomta.svc.cluster.local";

/** Retries an assertion until it holds (the page refreshes every second) or the time is up. */
async function eventually(check: () => Promise<void>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > end) throw err;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

const parseNumber = (text: string | null): number | null =>
  text === null || text.trim() === "—" ? null : Number(text.replace(/,/g, ""));

/** A table body's rows as {key: {field: text}}, from the data attributes the page sets. */
async function rows(page: Page, tbody: string, key: string): Promise<Record<string, Record<string, string>>> {
  return page.$$eval(
    `#${tbody} tr[data-${key}]`,
    (trs, k) =>
      Object.fromEntries(
        trs.map((tr) => [
          (tr as HTMLElement).dataset[k] as string,
          Object.fromEntries(
            [...tr.querySelectorAll("td")].map((td, i) => [
              (td as HTMLElement).dataset.field ?? `col${i}`,
              td.textContent,
            ]),
          ),
        ]),
      ),
    key,
  );
}

function pod(i: number): KumodMetrics {
  return {
    received: { esmtp_listener: 10 * i, http_listener: 1000 + 100 * i },
    scheduled: { "gmail.com": 5 + i, "yahoo.com": 2 * i, "campaign-1:tenant-a@outlook.com": 3 },
    readyQueues: [
      {
        source: "unspecified",
        site: SINK_SITE,
        ready: 4 + i,
        connections: 2,
        delivered: 900 + i,
        transfail: 30 + i,
        fail: i,
      },
      { source: "proxy-b", site: SINK_SITE, ready: 1, connections: 1, delivered: 50, transfail: 5, fail: 1 },
    ],
    hookDelivered: 777,
  };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const mailDelivered = (m: KumodMetrics) => sum(m.readyQueues.map((q) => q.delivered));

describe("the console in headless Chromium", () => {
  let browser: Awaited<ReturnType<typeof launchChromium>>;
  let page: Page;
  let sink: RunningSink;
  let tsa: StandInTsa;
  let kumods: StandInKumod[];
  let consoleApp: RunningConsole;
  const errors: string[] = [];

  const send = async (to: string[]) => {
    const transport = nodemailer.createTransport({
      host: "127.0.0.1",
      port: sink.smtpPort,
      secure: false,
      ignoreTLS: true,
    });
    try {
      await transport.sendMail({ envelope: { from: "app@sender.test", to }, raw: "Subject: hi\r\n\r\nhello\r\n" });
    } finally {
      transport.close();
    }
  };

  beforeAll(async () => {
    browser = await launchChromium();
    sink = await startSink("accept-all");
    tsa = await new StandInTsa().start();
    const expires = new Date(Date.now() + 45 * 60_000).toISOString();
    tsa.suspensions = [tsaGmailSuspension(expires)];
    tsa.overrides = [tsaYahooRateOverride(expires)];
    kumods = await Promise.all([0, 1, 2].map((i) => new StandInKumod(pod(i)).start()));
    consoleApp = await startConsole([
      "--kumod",
      kumods.map((k) => k.url).join(","),
      "--tsa",
      tsa.url,
      "--sink",
      sink.httpUrl,
      "--interval",
      "500",
    ]);
    await send(["a@gmail.com", "b@gmail.com", "c@gmail.com"]);
    await send(["d@yahoo.com", "e@yahoo.com"]);
    page = await browser.context.newPage();
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(consoleApp.url);
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await consoleApp?.stop();
    await Promise.all([...(kumods ?? []).map((k) => k.close()), tsa?.close(), sink?.stop()]);
  });

  it("fills every panel from the sources, with the numbers the sources report", async () => {
    const metrics = kumods.map((k) => k.metrics);
    const ids = kumods.map((k) => new URL(k.url).host);
    await eventually(async () => {
      const pods = await rows(page, "pods-body", "pod");
      expect(Object.keys(pods).sort()).toEqual([...ids].sort());
      metrics.forEach((m, i) => {
        const p = pods[ids[i] as string] as Record<string, string>;
        expect(p.state).toBe("ok");
        expect(parseNumber(p.scheduled as string)).toBe(sum(Object.values(m.scheduled)));
        expect(parseNumber(p.ready as string)).toBe(sum(m.readyQueues.map((q) => q.ready)));
        expect(parseNumber(p.connections as string)).toBe(sum(m.readyQueues.map((q) => q.connections)));
        // The TSA publish hook's deliveries are not mail: only smtp_client services count.
        expect(parseNumber(p.delivered as string)).toBe(mailDelivered(m));
        expect(parseNumber(p.transfail as string)).toBe(sum(m.readyQueues.map((q) => q.transfail)));
        expect(parseNumber(p.fail as string)).toBe(sum(m.readyQueues.map((q) => q.fail)));
        expect(parseNumber(p.received as string)).toBe(m.received.esmtp_listener + m.received.http_listener);
      });
    });

    const total = (name: string) => page.$eval(`[data-total="${name}"]`, (e) => e.textContent);
    expect(parseNumber(await total("delivered"))).toBe(sum(metrics.map(mailDelivered)));
    expect(parseNumber(await total("injected"))).toBe(
      sum(metrics.map((m) => m.received.esmtp_listener + m.received.http_listener)),
    );
    expect(await page.textContent("#totals")).toContain("over 3 of 3 pods");

    const stats = await getSinkStats(sink.httpUrl);
    await eventually(async () => {
      const domains = await rows(page, "domains-body", "domain");
      expect(parseNumber(domains["gmail.com"]?.queued ?? null)).toBe(
        sum(metrics.map((m) => m.scheduled["gmail.com"] ?? 0)),
      );
      expect(parseNumber(domains["outlook.com"]?.queued ?? null)).toBe(9);
      expect(parseNumber(domains["gmail.com"]?.accepted ?? null)).toBe(stats.domains["gmail.com"]?.accepted);
      expect(parseNumber(domains["yahoo.com"]?.accepted ?? null)).toBe(stats.domains["yahoo.com"]?.accepted);
      expect(stats.domains["gmail.com"]?.accepted).toBe(3);
    });

    const sites = await rows(page, "sites-body", "site");
    const unspecified = sites[`unspecified->${SINK_SITE}`] as Record<string, string>;
    expect(parseNumber(unspecified.delivered as string)).toBe(
      sum(metrics.map((m) => m.readyQueues[0]?.delivered ?? 0)),
    );
    expect(parseNumber(sites[`proxy-b->${SINK_SITE}`]?.ready ?? null)).toBe(3);

    const suspensions = await rows(page, "suspensions-body", "suspension");
    const s = Object.values(suspensions)[0] as Record<string, string>;
    expect(Object.values(s)).toEqual(
      expect.arrayContaining([
        "ready queue",
        // The site part of the ready queue tsa-daemon names.
        "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
        "unspecified",
        "automation rule: /4\\.7\\.28/",
      ]),
    );
    expect(Object.values(s).join(" ")).toMatch(/\(in 4[45]m\d+s\)/);
    const overrides = await rows(page, "overrides-body", "override");
    expect(Object.values(overrides["yahoo.com/unspecified/max_message_rate"] ?? {})).toEqual(
      expect.arrayContaining(["yahoo.com (MX rollup)", "max_message_rate = 1/h", "automation rule: /\\[TSS04\\]/"]),
    );

    expect(await page.textContent("#sink-active")).toBe("accept-all");
    expect(parseNumber(await page.$eval('[data-sink="accepted"]', (e) => e.textContent))).toBe(
      stats.recipients.accepted,
    );
    expect(await page.$$eval("#flow-chart canvas, #queue-chart canvas", (c) => c.length)).toBe(2);

    await mkdir(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: path.join(ARTIFACTS, "console.png"), fullPage: true });
  });

  it("charts the injection rate from the pods' counters, refreshing without a reload", async () => {
    // A page reload would drop this marker.
    await page.evaluate(() => Object.assign(window, { notReloaded: true }));
    for (const k of kumods) k.metrics.received.http_listener += 500;
    const injected = sum(kumods.map((k) => k.metrics.received.esmtp_listener + k.metrics.received.http_listener));
    await eventually(async () => {
      const state = await (await fetch(`${consoleApp.url}api/state`)).json();
      // 1,500 new messages over the three pods, spread over however many readings saw the change.
      const seen = (state.history.injected as (number | null)[]).filter((x): x is number => x !== null);
      expect(sum(seen) * (state.intervalMs / 1000)).toBeGreaterThan(1400);
    });
    await eventually(async () =>
      expect(parseNumber(await page.$eval('[data-total="injected"]', (e) => e.textContent))).toBe(injected),
    );
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
  });

  it("switches the sink's scenario from the page, and the sink then answers by it", async () => {
    await page.selectOption("#sink-scenario", "directives");
    await page.click("#sink-switch");
    await eventually(async () => expect(await page.textContent("#scenario-result")).toBe("switched to directives"));
    expect((await getScenario(sink.httpUrl)).name).toBe("directives");
    await eventually(async () => expect(await page.textContent("#sink-active")).toBe("directives"));

    await send(["tempfail@yahoo.com", "f@yahoo.com"]).catch(() => undefined);
    await eventually(async () => {
      const yahoo = (await rows(page, "domains-body", "domain"))["yahoo.com"] as Record<string, string>;
      expect(parseNumber(yahoo.deferred as string)).toBe(1);
      expect(parseNumber(yahoo.accepted as string)).toBe(3);
    });
  });

  it("shows a pod that goes away as unreachable, never as zeros", async () => {
    const gone = kumods[1] as StandInKumod;
    const id = new URL(gone.url).host;
    await gone.close();
    await eventually(async () => {
      const p = (await rows(page, "pods-body", "pod"))[id] as Record<string, string>;
      expect(p.state).toMatch(/^unreachable: /);
      for (const f of ["scheduled", "ready", "connections", "delivered", "transfail", "fail", "received"])
        expect(p[f], f).toBe("—");
    });
    expect(await page.textContent("#totals")).toContain("over 2 of 3 pods");
    const left = [kumods[0], kumods[2]].map((k) => (k as StandInKumod).metrics);
    expect(parseNumber(await page.$eval('[data-total="delivered"]', (e) => e.textContent))).toBe(
      sum(left.map(mailDelivered)),
    );
    expect(await page.$eval(`#pods-body tr[data-pod="${id}"]`, (e) => e.className)).toBe("unreachable");
    await page.screenshot({ path: path.join(ARTIFACTS, "console-pod-unreachable.png"), fullPage: true });
  });

  it("shows tsa-daemon and the sink as unreachable when they are, not as 'nothing happening'", async () => {
    await tsa.close();
    await eventually(async () => expect(await page.textContent("#tsa-status")).toMatch(/^tsa-daemon unreachable: /));
    expect(Object.keys(await rows(page, "suspensions-body", "suspension"))).toEqual([]);
    expect(await page.textContent("#suspensions-body")).toContain("unknown: tsa-daemon unreachable");

    await sink.stop();
    await eventually(async () => expect(await page.textContent("#sink-status")).toMatch(/^sink unreachable: /));
    const gmail = (await rows(page, "domains-body", "domain"))["gmail.com"] as Record<string, string>;
    expect(gmail.accepted).toBe("—");
    expect(await page.isDisabled("#sink-switch")).toBe(true);
  });

  it("logged no error in the browser console", () => {
    expect(errors).toEqual([]);
  });
});

describe("the console at the size the issue asks for (10 pods, 50 domains)", () => {
  it("lists every pod and domain and keeps refreshing", async () => {
    const domains = Array.from({ length: 50 }, (_, i) => `domain-${String(i).padStart(2, "0")}.example`);
    const kumods = await Promise.all(
      Array.from({ length: 10 }, (_, p) =>
        new StandInKumod({
          received: { esmtp_listener: 0, http_listener: 1000 * p },
          scheduled: Object.fromEntries(domains.map((d, i) => [d, i + p])),
          readyQueues: domains.map((d, i) => ({
            source: `source-${i % 4}`,
            site: `mx.${d}`,
            ready: i,
            connections: 1,
            delivered: 100 * i + p,
            transfail: i,
            fail: 0,
          })),
        }).start(),
      ),
    );
    const app = await startConsole([
      "--kumod",
      kumods.map((k) => k.url).join(","),
      "--tsa",
      "http://127.0.0.1:9/",
      "--sink",
      "http://127.0.0.1:9/",
    ]);
    const browser = await launchChromium();
    try {
      const page = await browser.context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (e) => errors.push(e.message));
      await page.goto(app.url);
      await eventually(async () => {
        expect(Object.keys(await rows(page, "pods-body", "pod"))).toHaveLength(10);
        const shown = await rows(page, "domains-body", "domain");
        expect(Object.keys(shown)).toEqual(domains);
        // domain-07 holds 7 + p messages on pod p.
        expect(parseNumber(shown["domain-07.example"]?.queued ?? null)).toBe(7 * 10 + 45);
        expect(Object.keys(await rows(page, "sites-body", "site"))).toHaveLength(50);
      });
      const first = await page.$eval("#updated", (e) => (e as HTMLElement).dataset.at);
      await eventually(async () =>
        expect(await page.$eval("#updated", (e) => (e as HTMLElement).dataset.at)).not.toBe(first),
      );
      expect(await page.textContent("#tsa-status")).toMatch(/^tsa-daemon unreachable/);
      expect(errors).toEqual([]);
    } finally {
      await browser.close();
      await app.stop();
      await Promise.all(kumods.map((k) => k.close()));
    }
  });
});
