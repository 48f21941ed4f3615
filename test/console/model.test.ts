import { describe, expect, it } from "vitest";
import {
  FlowTracker,
  kumodTotals,
  type PodView,
  parseReadyQueueService,
  podViews,
  queueDomain,
  SinkRecent,
  SiteRates,
  siteViews,
  suspensionViews,
} from "../../scripts/console/model.ts";
import { parsePrometheus } from "../../scripts/lib/prometheus.ts";
import type { SinkStats } from "../../scripts/lib/sink-api.ts";
import { parseShapingOverrides } from "../../scripts/lib/tsa-config.ts";
import {
  type KumodMetrics,
  kumodMetricsText,
  type TsaOverride,
  tsaShapingToml,
  tsaYahooRateOverride,
} from "./stand-ins.ts";

describe("kumod names", () => {
  it("splits a ready queue's service label into source and site", () => {
    expect(
      parseReadyQueueService("smtp_client:unspecified->mx_list:sink.kumomta.svc.cluster.local@smtp_client"),
    ).toEqual({ source: "unspecified", site: "mx_list:sink.kumomta.svc.cluster.local" });
    expect(parseReadyQueueService("smtp_client:ip-1->(alt1|alt2)?.gmail-smtp-in.l.google.com@smtp_client")).toEqual({
      source: "ip-1",
      site: "(alt1|alt2)?.gmail-smtp-in.l.google.com",
    });
    expect(parseReadyQueueService("lua:tsa-publish")).toBeNull();
  });

  it("finds the recipient domain of a scheduled queue name", () => {
    expect(queueDomain("gmail.com")).toBe("gmail.com");
    expect(queueDomain("tenant-a@yahoo.com")).toBe("yahoo.com");
    expect(queueDomain("campaign:tenant@outlook.com")).toBe("outlook.com");
    expect(queueDomain("campaign:example.com")).toBe("example.com");
    expect(queueDomain("tenant@example.com!routed.example")).toBe("example.com");
    expect(queueDomain("hook-http://tsa-0.tsa-headless:8008")).toBeNull();
  });
});

const pod = (id: string, received: number, delivered: number, transfail = 0, fail = 0): PodView => ({
  id,
  url: `http://${id}`,
  queues: {
    scheduled: 0,
    ready: 0,
    connections: 0,
    delivered,
    transientFailures: transfail,
    permanentFailures: fail,
    received,
  },
});

describe("FlowTracker", () => {
  it("turns counters into messages per second, summed over pods", () => {
    const f = new FlowTracker();
    expect(f.step(0, [pod("a", 0, 0), pod("b", 10, 0)])).toEqual({
      injected: null,
      delivered: null,
      deferred: null,
      bounced: null,
    });
    expect(f.step(2000, [pod("a", 100, 40, 6, 2), pod("b", 30, 20)])).toEqual({
      injected: 60,
      delivered: 30,
      deferred: 3,
      bounced: 1,
    });
  });

  it("counts a restarted pod's counters as new and lets a returning pod only set a baseline", () => {
    const f = new FlowTracker();
    f.step(0, [pod("a", 500, 500), pod("b", 100, 0)]);
    // a restarted (counters went down); b unreachable.
    expect(f.step(1000, [pod("a", 20, 10), { id: "b", url: "", error: "ECONNREFUSED" }])).toMatchObject({
      injected: 20,
      delivered: 10,
    });
    // b is back with counters that grew while it was not read: no spike from the gap.
    expect(f.step(2000, [pod("a", 30, 20), pod("b", 900, 0)])).toMatchObject({ injected: 10, delivered: 10 });
    expect(f.step(3000, [pod("a", 30, 20), pod("b", 905, 0)])).toMatchObject({ injected: 5 });
  });

  it("has no rate (not zero) when no pod could be read", () => {
    const f = new FlowTracker();
    f.step(0, [pod("a", 1, 1)]);
    expect(f.step(1000, [{ id: "a", url: "", error: "timeout" }]).injected).toBeNull();
  });
});

describe("pods and totals from kumod's /metrics", () => {
  it("counts mail only: listeners for injections, smtp_client services for deliveries, not the TSA log hook", () => {
    const text = kumodMetricsText({
      received: { esmtp_listener: 5, http_listener: 7 },
      scheduled: { "gmail.com": 3, "t@yahoo.com": 4 },
      readyQueues: [
        { source: "s1", site: "site-a", ready: 1, connections: 2, delivered: 10, transfail: 3, fail: 1 },
        { source: "s2", site: "site-a", ready: 2, connections: 1, delivered: 5, transfail: 0, fail: 0 },
      ],
      hookDelivered: 1000,
    });
    const [view] = podViews([{ id: "kumod-0", url: "u", samples: parsePrometheus(text) }]);
    expect(view?.queues).toEqual({
      scheduled: 7,
      ready: 3,
      connections: 3,
      delivered: 15,
      transientFailures: 3,
      permanentFailures: 1,
      received: 12,
    });
    expect(kumodTotals([view as PodView, { id: "kumod-1", url: "u", error: "down" }])).toEqual(view?.queues);
    expect(kumodTotals([{ id: "kumod-1", url: "u", error: "down" }])).toBeUndefined();
  });
});

describe("SiteRates", () => {
  const reading = (id: string, delivered: [number, number]) => {
    const m: KumodMetrics = {
      received: { esmtp_listener: 0, http_listener: 0 },
      scheduled: {},
      readyQueues: [
        {
          source: "ip-1",
          site: "gmail-site",
          ready: 0,
          connections: 1,
          delivered: delivered[0],
          transfail: 0,
          fail: 0,
        },
        {
          source: "ip-2",
          site: "gmail-site",
          ready: 0,
          connections: 1,
          delivered: delivered[1],
          transfail: 0,
          fail: 0,
        },
      ],
    };
    return { id, url: "u", samples: parsePrometheus(kumodMetricsText(m)) };
  };

  it("gives each source->site its own delivery rate, summed over pods, so one paused source shows as such", () => {
    const r = new SiteRates();
    const first = [reading("kumod-0", [0, 0]), reading("kumod-1", [10, 10])];
    const sites0 = siteViews(first);
    r.step(0, first, sites0);
    expect(sites0.map((s) => s.rates?.delivered)).toEqual([null, null]);
    // ip-2 is suspended for the site: its counter stops on both pods.
    const second = [reading("kumod-0", [40, 0]), reading("kumod-1", [30, 10])];
    const sites1 = siteViews(second);
    r.step(2000, second, sites1);
    expect(sites1.map((s) => [s.source, s.rates?.delivered])).toEqual([
      ["ip-1", 30],
      ["ip-2", 0],
    ]);
  });
});

const stats = (startedAt: string, accepted: number, deferred = 0): SinkStats => ({
  scenario: "accept-all",
  started_at: startedAt,
  connections: { active: 0, total: 0, tls: 0 },
  messages: { accepted, deferred, bounced: 0 },
  recipients: { accepted, deferred, bounced: 0 },
  bytes: { accepted: 0 },
  replies: {},
  faults: {},
  domains: { "gmail.com": { accepted, deferred, bounced: 0 } },
});

describe("SinkRecent", () => {
  it("reports the outcomes within the window, and starts over when the sink restarts", () => {
    const r = new SinkRecent(10_000);
    expect(r.step(0, stats("t0", 5))?.["gmail.com"]).toEqual({ accepted: 0, deferred: 0, bounced: 0 });
    r.step(5_000, stats("t0", 8, 1));
    expect(r.step(10_000, stats("t0", 12, 2))?.["gmail.com"]).toEqual({ accepted: 7, deferred: 2, bounced: 0 });
    expect(r.step(15_000, stats("t0", 12, 2))?.["gmail.com"]).toEqual({ accepted: 4, deferred: 1, bounced: 0 });
    expect(r.step(16_000, stats("t1", 3))?.["gmail.com"]).toEqual({ accepted: 0, deferred: 0, bounced: 0 });
    expect(r.step(17_000, undefined)).toBeUndefined();
  });
});

describe("tsa-daemon's answers", () => {
  it("reads config overrides with their reason and expiry from shaping.toml's comments", () => {
    const overrides: TsaOverride[] = [
      tsaYahooRateOverride("2026-12-02T01:30:00+00:00"),
      {
        domain: "yahoo.com",
        mxRollup: true,
        source: "unspecified",
        name: "connection_limit",
        value: "2",
        reason: "automation rule: (/421/,/TSS05/)",
        expires: "2026-12-02T02:00:00+00:00",
      },
      {
        domain: "gmail.com",
        mxRollup: false,
        source: "ip-2",
        name: "max_deliveries_per_connection",
        value: "{ limit = 5 }",
        reason: "automation rule: /4.7.28/",
        expires: "2026-12-02T03:00:00+00:00",
      },
    ];
    expect(parseShapingOverrides(tsaShapingToml(overrides))).toEqual([
      { ...overrides[0], value: "1/h" },
      { ...overrides[1], value: "2" },
      { ...overrides[2], value: '{"limit":5}' },
    ]);
    expect(parseShapingOverrides("# Generated by tsa-daemon\n# Number of entries: 0\n\n")).toEqual([]);
  });

  it("lists suspensions in both shapes tsa-daemon and kumod use, soonest expiry first", () => {
    const entry = (site: string, expires: string) => ({
      rule_hash: "h",
      site_name: site,
      reason: "automation rule: /421/",
      source: "unspecified",
      expires,
    });
    const json = { ready_q: [entry("b-site", "2026-12-02T02:00:00Z"), entry("a-site", "2026-12-02T01:00:00Z")] };
    const views = suspensionViews(json);
    expect(views.map((v) => v.site)).toEqual(["a-site", "b-site"]);
    expect(views[0]).toEqual({
      scope: "ready queue",
      site: "a-site",
      source: "unspecified",
      reason: "automation rule: /421/",
      expires: "2026-12-02T01:00:00Z",
    });
    expect(suspensionViews([{ domain: "x.com", reason: "r", expires: "e" }])).toEqual([
      { scope: "scheduled queue", domain: "x.com", reason: "r", expires: "e" },
    ]);
    expect(suspensionViews({ ready_q: [] })).toEqual([]);
  });

  it("shows the site of a suspension that names its ready queue in full, as tsa-daemon does", () => {
    const [view] = suspensionViews({
      ready_q: [
        {
          site_name: "proxy-1->(mta5|mta6|mta7).am0.yahoodns.net@smtp_client",
          source: "proxy-1",
          reason: "automation rule: \\[TS?S04\\]",
          expires: "2026-12-02T06:00:00Z",
        },
      ],
    });
    expect(view).toMatchObject({ site: "(mta5|mta6|mta7).am0.yahoodns.net", source: "proxy-1" });
  });
});
