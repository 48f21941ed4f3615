import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parsePrometheus } from "../../scripts/lib/prometheus.ts";
import type { SinkStats } from "../../scripts/lib/sink-api.ts";
import {
  otherSinkClients,
  type ProxyPod,
  parseProxyPods,
  proxyMetrics,
  sinkCountsFor,
} from "../../scripts/lib/status-proxy.ts";
import {
  kumodPodSummary,
  parseReadyQueueName,
  readyQueueSuspensions,
  sourceSiteTable,
} from "../../scripts/lib/status-queues.ts";
import { suspensionList } from "../../scripts/lib/tsa.ts";

/**
 * `npm run status`'s sending-IP and source × site views, from text the real binaries served (test/status/fixtures):
 * kumod, tsa-daemon and proxy-server 2026.06.23-f3af1cd0 on loopback with the project's sink in its
 * yahoo-ip-throttle scenario. kumod sent through egress sources proxy-0 (KumoProxy bound to 127.0.0.10) and proxy-1
 * (127.0.0.11); the sink deferred 127.0.0.10 at Yahoo with [TSS04] and TSA suspended proxy-0 there.
 */
const fixture = (name: string) => readFileSync(path.join(import.meta.dirname, "fixtures", name), "utf8");
const kumod0 = parsePrometheus(fixture("kumod-0.metrics.txt"));
const kumod1 = parsePrometheus(fixture("kumod-1.metrics.txt"));
const tsaSuspended = suspensionList(JSON.parse(fixture("tsa-suspended.json")));
const sinkStats = JSON.parse(fixture("sink-stats.json")) as SinkStats;

const YAHOO = "(mta5|mta6|mta7).am0.yahoodns.net";

describe("ready queue names", () => {
  it("splits kumod's ready queue names into source, site and protocol", () => {
    expect(parseReadyQueueName(`proxy-1->${YAHOO}@smtp_client`)).toEqual({
      source: "proxy-1",
      site: YAHOO,
      protocol: "smtp_client",
    });
    expect(parseReadyQueueName("direct->mx_list:sink.kumomta.svc.cluster.local@smtp_client")).toEqual({
      source: "direct",
      site: "mx_list:sink.kumomta.svc.cluster.local",
      protocol: "smtp_client",
    });
    // TSA's publish queue, as kumod 2026.06.23 names it: the protocol part has its own ":" and "//".
    expect(
      parseReadyQueueName(
        "unspecified->http://127.0.0.1:18008.tsa.kumomta@lua:make.http://127.0.0.1:18008.tsa.kumomta",
      ),
    ).toEqual({
      source: "unspecified",
      site: "http://127.0.0.1:18008.tsa.kumomta",
      protocol: "lua:make.http://127.0.0.1:18008.tsa.kumomta",
    });
    // A maildir path may hold "@"; a site never does.
    expect(parseReadyQueueName("direct->example.com@maildir:/var/mail/a@b")?.protocol).toBe("maildir:/var/mail/a@b");
  });

  it("says undefined for names that are no ready queue", () => {
    for (const name of ["smtp_client", "lua", "example.com", "->site@smtp_client", "src->@smtp_client", "src->site"])
      expect(parseReadyQueueName(name), name).toBeUndefined();
  });
});

describe("kumod queue totals per pod", () => {
  it("counts mail queues once: not kumod's per-protocol total, not TSA's publish queue", () => {
    const q = kumodPodSummary(kumod0);
    // 308 + 315 in the two example.com queues; kumod's own total (ready_count{service="smtp_client"}) says 623 too.
    expect(q.ready).toBe(623);
    expect(q.connections).toBe(9);
    expect(q.delivered).toBe(1189 + 1183 + 35);
    expect(q.transientFailures).toBe(1);
    expect(q.topReady.map((t) => t.queue)).toEqual([
      "smtp_client:proxy-1->mx1.example.com@smtp_client",
      "smtp_client:proxy-0->mx1.example.com@smtp_client",
    ]);
  });
});

describe("ready queues by source and site", () => {
  const tsaPods = [{ pod: "tsa-0", suspensions: tsaSuspended }];

  it("sums every kumod pod's queues per (source, site) and shows TSA's suspension of the pair", () => {
    const rows = sourceSiteTable(
      [
        { pod: "kumod-0", samples: kumod0 },
        { pod: "kumod-1", samples: kumod1 },
      ],
      tsaPods,
    );
    const suspension = {
      reason: "automation rule: \\[TS?S04\\]",
      expires: "2026-12-02T05:51:43.637975825Z",
      tsa: ["tsa-0"],
    };
    expect(rows).toEqual([
      {
        source: "proxy-0",
        site: YAHOO,
        ready: 0,
        connections: 0,
        delivered: 0,
        transientFailures: 2,
        permanentFailures: 0,
        suspensions: [suspension],
      },
      {
        source: "proxy-1",
        site: YAHOO,
        ready: 0,
        connections: 8,
        delivered: 70,
        transientFailures: 0,
        permanentFailures: 0,
        suspensions: [],
      },
      {
        source: "proxy-0",
        site: "mx1.example.com",
        ready: 308,
        connections: 3,
        delivered: 1189,
        transientFailures: 0,
        permanentFailures: 0,
        suspensions: [],
      },
      {
        source: "proxy-1",
        site: "mx1.example.com",
        ready: 315,
        connections: 2,
        delivered: 1183,
        transientFailures: 0,
        permanentFailures: 0,
        suspensions: [],
      },
    ]);
  });

  it("lists a suspended pair whose queues kumod has pruned, with zeros", () => {
    const rows = sourceSiteTable([], tsaPods);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ source: "proxy-0", site: YAHOO, ready: 0, delivered: 0 });
    expect(rows[0]?.suspensions).toHaveLength(1);
  });

  it("is empty when no kumod pod answered and nothing is suspended", () => {
    expect(sourceSiteTable([], [])).toEqual([]);
  });
});

describe("TSA suspensions by (source, site)", () => {
  const later = { ...(tsaSuspended[0] as object), expires: "2026-12-02T05:51:44.000000001Z" };

  it("lists a suspension that several tsa pods hold once, with the pods and the latest expiry", () => {
    const pairs = readyQueueSuspensions([
      { pod: "tsa-0", suspensions: tsaSuspended },
      { pod: "tsa-1", suspensions: [later] },
    ]);
    expect([...pairs.values()]).toEqual([
      {
        source: "proxy-0",
        site: YAHOO,
        suspensions: [
          {
            reason: "automation rule: \\[TS?S04\\]",
            expires: "2026-12-02T05:51:44.000000001Z",
            tsa: ["tsa-0", "tsa-1"],
          },
        ],
      },
    ]);
  });

  it("takes source and site from the entry when site_name is no ready queue name", () => {
    const pairs = readyQueueSuspensions([
      {
        pod: "tsa-0",
        suspensions: [{ rule_hash: "ab", site_name: YAHOO, source: "proxy-2", reason: "r", expires: "e" }],
      },
    ]);
    expect([...pairs.values()]).toEqual([
      { source: "proxy-2", site: YAHOO, suspensions: [{ reason: "r", expires: "e", tsa: ["tsa-0"] }] },
    ]);
  });

  it("leaves out scheduled-queue suspensions, which name a domain and no site", () => {
    const schedQ = { domain: "yahoo.com", tenant: null, campaign: null, reason: "r", expires: "e" };
    expect(readyQueueSuspensions([{ pod: "tsa-0", suspensions: [schedQ, "junk", null] }]).size).toBe(0);
  });
});

describe("sending IPs", () => {
  it("reads KumoProxy's connection counters, the active gauge missing while it is 0", () => {
    expect(proxyMetrics(parsePrometheus(fixture("proxy.metrics.txt")))).toEqual({
      active: 9,
      accepted: 42,
      completed: 33,
      failed: 0,
    });
    expect(proxyMetrics(parsePrometheus(fixture("proxy-idle.metrics.txt")))).toEqual({
      active: 0,
      accepted: 7,
      completed: 4,
      failed: 3,
    });
  });

  it("reads each proxy pod's IP from kubectl's pod list", () => {
    const pod = (name: string, status: Record<string, unknown>) => ({
      metadata: { name, labels: { "app.kubernetes.io/name": "kumoproxy" } },
      status,
    });
    const json = JSON.stringify({
      items: [
        pod("proxy-0", {
          phase: "Running",
          podIP: "10.244.1.7",
          conditions: [{ type: "Ready", status: "True" }],
          containerStatuses: [{ restartCount: 1 }],
        }),
        pod("proxy-1", {
          phase: "Pending",
          containerStatuses: [{ state: { waiting: { reason: "ImagePullBackOff" } } }],
        }),
      ],
    });
    expect(parseProxyPods(json)).toEqual([
      { name: "proxy-0", app: "kumoproxy", phase: "Running", ready: true, restarts: 1, ip: "10.244.1.7" },
      { name: "proxy-1", app: "kumoproxy", phase: "Pending", ready: false, restarts: 0, reason: "ImagePullBackOff" },
    ]);
  });

  it("finds what the sink counted from a pod's IP, per site", () => {
    const counts = sinkCountsFor("127.0.0.10", sinkStats);
    expect(counts?.sites.yahoo?.messages).toEqual({ accepted: 0, deferred: 10, bounced: 0 });
    expect(counts?.sites.other?.recipients.accepted).toBe(1505);
    expect(sinkCountsFor("127.0.0.11", sinkStats)?.sites.yahoo?.messages.accepted).toBe(44);
    expect(sinkCountsFor("10.9.9.9", sinkStats)).toBeUndefined();
    expect(sinkCountsFor(undefined, sinkStats)).toBeUndefined();
    expect(sinkCountsFor("127.0.0.10", undefined)).toBeUndefined();
  });

  it("matches an IPv6 pod IP in the sink's lower-case form", () => {
    const c = { connections: 1, messages: zero(), recipients: zero(), sites: {} };
    const stats = { ...sinkStats, clients: { "fd00:10:244::7": c } } as SinkStats;
    expect(sinkCountsFor("FD00:10:244::7", stats)).toBe(c);
  });

  it("lists the sink's other client IPs: no proxy pod's", () => {
    const proxies: ProxyPod[] = [
      { name: "proxy-0", app: "kumoproxy", phase: "Running", ready: true, restarts: 0, ip: "127.0.0.10" },
      { name: "proxy-1", app: "kumoproxy", phase: "Pending", ready: false, restarts: 0 },
    ];
    expect(otherSinkClients(sinkStats, proxies)).toEqual([
      {
        ip: "127.0.0.11",
        counts: {
          connections: 22,
          messages: { accepted: 1549, deferred: 0, bounced: 0 },
          recipients: { accepted: 1549, deferred: 0, bounced: 0 },
        },
      },
    ]);
    expect(otherSinkClients(undefined, proxies)).toEqual([]);
  });
});

function zero() {
  return { accepted: 0, deferred: 0, bounced: 0 };
}
