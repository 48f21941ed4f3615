/**
 * The many-nodes architecture in real KumoMTA binaries: three kumods and two tsa-daemons started exactly as the
 * rendered manifests start them (see lib/cluster.ts), Redis in Dragonfly's place, our sink as every destination.
 */
import { readFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseShapingOverrides } from "../../scripts/lib/tsa-config.ts";
import { repoRoot } from "../k8s/render.ts";
import { bundleFromEnv } from "./lib/bundle.ts";
import { accepted, basic, http, inject, metricSum, sinkScenario, sinkStats } from "./lib/client.ts";
import { TestCluster, tail } from "./lib/cluster.ts";
import { waitFor } from "./lib/network.ts";

const KUMODS = 3;
const TSAS = 2;
/** The egress sources in service: one per proxy pod (policy/sources.toml, k8s/components/proxy). */
const PROXIES = ["proxy-0", "proxy-1"];
const PROVIDER_DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.com"];
const ACCEPT_ALL = { name: "test-accept", directives: "off", rules: [] };

let cluster: TestCluster;
const summary: string[] = [];

beforeAll(async () => {
  const started = Date.now();
  cluster = await TestCluster.start({ bundle: bundleFromEnv(), kumods: KUMODS, tsas: TSAS, proxies: PROXIES.length });
  summary.push(
    `cluster: ${KUMODS} kumod, ${TSAS} tsa-daemon, ${PROXIES.length} KumoProxy, redis, sink up in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
});

afterAll(async () => {
  await cluster?.stop();
  if (summary.length > 0) console.log(`\ntest:kumod summary\n  ${summary.join("\n  ")}\n`);
});

const kumodUrls = () => Array.from({ length: KUMODS }, (_, i) => cluster.kumodUrl(i));
const auth = () => basic(cluster.credentials.httpUser, cluster.credentials.httpPassword);
const metrics = async (url: string) => (await http(`${url}/metrics`)).body;

/** Each kumod's non-empty queues and ready-queue states, for a failure message. */
async function queueReport(): Promise<string> {
  const lines: string[] = [];
  for (const [k, url] of kumodUrls().entries()) {
    const text = await metrics(url);
    const queued = text
      .split("\n")
      .filter((l) => /^(scheduled_count|ready_count|connection_count)\{/.test(l) && !l.endsWith(" 0"));
    const states = (await http(`${url}/api/admin/ready-q-states/v1`)).body;
    lines.push(`kumod-${k}: ${queued.join("; ")}; states ${states}`);
  }
  return lines.join("\n");
}

/**
 * Waits until `count()` reaches `expected`, then a little longer, and returns the final count: a message delivered
 * twice would show as more than expected.
 */
async function settledCount(count: () => Promise<number>, expected: number, timeoutMs: number, what: string) {
  await waitFor(async () => (await count()) >= expected, timeoutMs, what);
  await new Promise((r) => setTimeout(r, 3000));
  return count();
}

/** `perKumod` recipients at `domain` injected into every kumod; what they accepted and what they refused. */
async function injectIntoEveryKumod(domain: string, perKumod: number, prefix: string) {
  let acceptedCount = 0;
  let refused = 0;
  for (const [k, url] of kumodUrls().entries()) {
    const recipients = Array.from({ length: perKumod }, (_, i) => `${prefix}${k}-${i}@${domain}`);
    const r = await inject(url, recipients, { authorization: auth() });
    acceptedCount += r.result?.success_count ?? 0;
    refused += r.status === 200 ? (r.result?.fail_count ?? 0) : perKumod;
  }
  return { accepted: acceptedCount, refused };
}

/** How many records a kumod has delivered to tsa-<t>'s publish queue. */
const publishedTo = async (url: string, t: number) =>
  metricSum(await metrics(url), "total_messages_delivered_by_provider", `tsa-${t}.tsa-headless.`);

/**
 * One comcast.net message from every kumod, answered with a reply a rule matches (so the shaping helper's pre_filter
 * publishes its record) whose Threshold trigger (2/hr for RL0000) one record per kumod does not reach first: no
 * kumod's message is held back, and every kumod has a record to publish.
 */
async function publishFromEveryKumod(localPart: string) {
  await sinkScenario(cluster.sinkUrl, {
    name: "test-comcast-rl",
    directives: "off",
    rules: [
      { name: "comcast-rl", stage: "rcpt", domains: ["comcast.net"], reply: "421 4.7.0 RL000001 too many sessions" },
    ],
  });
  await Promise.all(
    kumodUrls().map(async (url, k) =>
      expect(
        (await inject(url, [`${localPart}-${k}@comcast.net`], { authorization: auth() })).result?.success_count,
      ).toBe(1),
    ),
  );
}

/** Runs a one-off Node script in a pod's network namespace and returns what it printed. */
async function inPod(pod: string, script: string): Promise<string> {
  const host = cluster.pods.get(pod)?.host;
  if (!host) throw new Error(`no pod ${pod}`);
  const r = await execa("nsenter", [...host.nsenter, process.execPath, "-e", script], { reject: false });
  return r.stdout.trim();
}

describe("pods started from the rendered manifests", () => {
  it("runs tsa-daemon on a read-only root filesystem, its node id on the state volume", async () => {
    for (let i = 0; i < TSAS; i++) {
      expect((await http(`${cluster.tsaUrl(i)}/tsa/status`)).body).toContain("TSA Daemon OK");
      const nodeId = await readFile(path.join(cluster.dir, "pods", `tsa-${i}`, "claims", "state", ".nodeid"), "utf8");
      expect(nodeId.trim()).toMatch(/^[0-9a-f-]{36}$/);
    }
  });

  it("passes `kumod --validate` with the policy as mounted", async () => {
    const validate = await cluster.launchPod("kumod-0", { args: ["--validate"] });
    const code = await validate.exited;
    expect(code, tail(validate.output())).toBe(0);
  });

  it("cannot reach any address outside the pod network", async () => {
    const attempt = (host: string, port: number) => `
      const s = require("node:net").connect({ host: ${JSON.stringify(host)}, port: ${port} });
      s.on("connect", () => { console.log("CONNECTED"); process.exit(0); });
      s.on("error", (e) => { console.log(e.code); process.exit(0); });
      setTimeout(() => { console.log("TIMEOUT"); process.exit(0); }, 3000);`;
    // A public resolver, a public SMTP port, and this machine's own gateway: no route to any of them.
    for (const [host, port] of [
      ["1.1.1.1", 53],
      ["8.8.8.8", 25],
      ["192.0.2.1", 25],
    ] as const) {
      expect(await inPod("kumod-0", attempt(host, port))).toBe("ENETUNREACH");
    }
    const routes = (await execa("ip", ["route"])).stdout;
    expect(routes).not.toMatch(/^default/m);
    const links = (await execa("ip", ["-o", "link"])).stdout;
    expect(links.split("\n").map((l) => l.split(":")[1]?.trim().split("@")[0])).toEqual(
      expect.arrayContaining(["lo", "kt0"]),
    );
    expect(links).not.toMatch(/: eth\d|: en[ops]/);
  });
});

describe("access", () => {
  it("injects for an untrusted peer only with the generated credentials", async () => {
    const from = cluster.net.untrustedIp;
    const url = cluster.kumodUrl(0);
    const to = ["someone@access.example"];
    expect((await inject(url, to, { from })).status).toBe(401);
    const wrong = basic(cluster.credentials.httpUser, `${cluster.credentials.httpPassword}x`);
    expect((await inject(url, to, { from, authorization: wrong })).status).toBe(401);
    const ok = await inject(url, to, { from, authorization: auth() });
    expect(ok.status).toBe(200);
    expect(ok.result?.success_count, ok.body).toBe(1);
  });

  it("serves /metrics to trusted peers only, and no secret in it", async () => {
    const { httpPassword, dragonflyPassword } = cluster.credentials;
    for (const url of kumodUrls()) {
      const text = await metrics(url);
      // The Redis connection is labelled by its node, which names Dragonfly and nothing more.
      expect(text).toMatch(
        /redis_operation_latency_count\{[^}]*service="redis:\/\/dragonfly\.kumomta\.svc\.cluster\.local:6379-/,
      );
      for (const secret of [dragonflyPassword, encodeURIComponent(dragonflyPassword), httpPassword]) {
        expect(text).not.toContain(secret);
      }
      const untrusted = await http(`${url}/metrics`, {
        from: cluster.net.untrustedIp,
        headers: { authorization: auth() },
      });
      expect(untrusted.status).toBe(401);
    }
  });
});

describe("delivery", () => {
  it("delivers mail injected across all kumods to the sink, every message exactly once", async () => {
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    const before = await sinkStats(cluster.sinkUrl);
    const perDomain = 25;
    const expected = new Map<string, number>();
    const started = Date.now();
    for (const [k, url] of kumodUrls().entries()) {
      for (const domain of PROVIDER_DOMAINS) {
        const recipients = Array.from({ length: perDomain }, (_, i) => `k${k}-${i}@${domain}`);
        const r = await inject(url, recipients, { authorization: auth() });
        expect(r.result?.success_count, r.body).toBe(perDomain);
        expected.set(domain, (expected.get(domain) ?? 0) + perDomain);
      }
    }
    const delta = async () => {
      const now = await sinkStats(cluster.sinkUrl);
      return PROVIDER_DOMAINS.map((d) => accepted(now, d) - accepted(before, d));
    };
    const want = PROVIDER_DOMAINS.map((d) => expected.get(d) ?? 0);
    let seen: number[] = [];
    await waitFor(
      async () => {
        seen = await delta();
        return seen.every((n, i) => n >= (want[i] ?? 0));
      },
      // provider_connection_limit (5 for Google and Microsoft) is one Redis lease for the whole cluster, and an idle
      // connection keeps its lease for idle_timeout (60 s): the last kumod may wait that long, as in production.
      180_000,
      "the sink to count every message",
    ).catch(async (err) => {
      throw new Error(
        `${err.message}: sink counted ${seen.join("/")} of ${want.join("/")} (${PROVIDER_DOMAINS.join("/")})\n${await queueReport()}`,
      );
    });
    await new Promise((r) => setTimeout(r, 2000));
    expect(await delta()).toEqual(want);
    // One ready queue per provider site, named as against the real providers' MX hosts (mx-dns).
    const siteQueue: Record<string, string> = {
      "gmail.com": "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
      "yahoo.com": "(mta5|mta6|mta7).am0.yahoodns.net",
      "outlook.com": "outlook-com.olc.protection.outlook.com",
      "example.com": "mx1.example.com",
    };
    // Through every proxy: each egress source proxy-N delivered its share of every site's mail.
    const texts = await Promise.all(kumodUrls().map(metrics));
    const bySource = (domain: string, source: string) =>
      texts.reduce(
        (sum, t) =>
          sum +
          metricSum(t, "total_messages_delivered", `service="smtp_client:${source}->${siteQueue[domain]}@smtp_client"`),
        0,
      );
    for (const [i, domain] of PROVIDER_DOMAINS.entries()) {
      const perSource = PROXIES.map((p) => bySource(domain, p));
      expect(
        perSource.every((n) => n > 0),
        `${domain} by source ${perSource.join("/")}`,
      ).toBe(true);
      expect(
        perSource.reduce((a, b) => a + b, 0),
        domain,
      ).toBeGreaterThanOrEqual(want[i] ?? 0);
    }
    // Each provider's mail came in on its own site port, so the sink greeted and counted it as that provider.
    const after = await sinkStats(cluster.sinkUrl);
    const siteOf: Record<string, string> = {
      "gmail.com": "google",
      "yahoo.com": "yahoo",
      "outlook.com": "outlook",
      "example.com": "other",
    };
    for (const [i, domain] of PROVIDER_DOMAINS.entries()) {
      const site = siteOf[domain] as string;
      expect((after.sites?.[site]?.accepted ?? 0) - (before.sites?.[site]?.accepted ?? 0), site).toBeGreaterThanOrEqual(
        want[i] ?? 0,
      );
    }
    const total = want.reduce((a, b) => a + b, 0);
    summary.push(
      `delivery: ${total} messages over ${KUMODS} kumods and ${PROVIDER_DOMAINS.length} domains, each delivered once (${((Date.now() - started) / 1000).toFixed(1)} s)`,
    );
  });
});

describe("traffic shaping automation", () => {
  it("every kumod publishes its delivery logs to every tsa-daemon", async () => {
    await publishFromEveryKumod("tsa");
    for (const url of kumodUrls()) {
      await waitFor(
        async () =>
          (await Promise.all(Array.from({ length: TSAS }, (_, t) => publishedTo(url, t)))).every((n) => n >= 1),
        60_000,
        `${url} to publish to every tsa-daemon`,
      );
    }
    summary.push(`tsa: each of ${KUMODS} kumods published its records to all ${TSAS} tsa-daemons`);
  });

  it("both tsa-daemons suspend one sending IP for Yahoo when Yahoo defers that IP (TSS04)", async () => {
    // Yahoo defers proxy-1's address only, as it does one IP with a poor reputation.
    const throttled = cluster.ip("proxy-1");
    await sinkScenario(cluster.sinkUrl, {
      name: "test-yahoo-tss04-one-ip",
      directives: "off",
      rules: [
        {
          name: "yahoo-tss04",
          stage: "mail",
          sites: ["yahoo"],
          clients: [throttled],
          reply:
            "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
        },
      ],
    });
    // The pool alternates between its sources, so a few messages reach Yahoo through both proxies.
    const tss04 = Array.from({ length: 6 }, (_, i) => `tss04-${i}@yahoo.com`);
    expect((await inject(cluster.kumodUrl(0), tss04, { authorization: auth() })).result?.success_count).toBe(6);
    // policy-extras' ["default"] automation matches "Messages from <ip> temporarily deferred" (immediately) and sets
    // the rate and connections; the shipped Yahoo provider rule suspends the site for two hours. Both act on the
    // (source, site) pair whose delivery was deferred. Read with the parser `npm run status` and the console use.
    const yahooOverrides = async (t: number) =>
      parseShapingOverrides((await http(`${cluster.tsaUrl(t)}/get_config_v1/shaping.toml`)).body)
        .filter((o) => o.domain === "yahoo.com")
        .map((o) => `${o.source}:${o.name}=${o.value}`)
        .sort();
    const yahooSuspensions = async (t: number) =>
      (
        JSON.parse((await http(`${cluster.tsaUrl(t)}/get_suspension_v1/suspended.json`)).body).ready_q as {
          source: string;
          site_name: string;
        }[]
      ).filter((q) => /yahoodns\.net/.test(q.site_name));
    for (let t = 0; t < TSAS; t++) {
      await waitFor(
        async () =>
          (await yahooOverrides(t)).join(" ") === "proxy-1:connection_limit=1 proxy-1:max_message_rate=1/minute",
        60_000,
        `tsa-${t} to publish the yahoo.com override for proxy-1`,
      );
      await waitFor(async () => (await yahooSuspensions(t)).length > 0, 60_000, `tsa-${t} to suspend proxy-1 at Yahoo`);
      // Both Yahoo rules (policy-extras' and the community file's) match TSS04, each with its own suspension.
      expect(new Set((await yahooSuspensions(t)).map((q) => q.source))).toEqual(new Set(["proxy-1"]));
    }
    summary.push(
      `tsa: Yahoo deferred proxy-1 (${throttled}); both tsa-daemons set proxy-1 to 1 connection, 1/minute at yahoo.com and suspended ${(await yahooSuspensions(0))[0]?.site_name}, proxy-0 untouched`,
    );
  });

  it("sends Yahoo's mail through the other IPs while one is suspended there, and every IP to other sites", async () => {
    // Every kumod takes TSA's suspension over its subscription (a WebSocket to the tsa Service, batched per 3 s)
    // and applies it as an admin ready-queue suspension, which the pool's source selection skips
    // (crates/kumod/src/egress_source.rs, "filter to non-suspended pathways").
    for (const url of kumodUrls()) {
      let applied = "";
      await waitFor(
        async () => {
          applied = (await http(`${url}/api/admin/suspend-ready-q/v1`)).body;
          // Either Yahoo rule's suspension: "\[TS?S04\]" (policy-extras) or "421 4\.7\.0 \[TSS04\]" (community).
          return /proxy-1->[^"]*yahoodns\.net.*automation rule: [^"]*\[TS\??S04/.test(applied);
        },
        30_000,
        `${url} to apply TSA's suspension of proxy-1 at Yahoo`,
      ).catch((err) => {
        throw new Error(`${err.message}; its suspensions: ${applied}`);
      });
    }
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    const yahoo = ["yahoo.com", "aol.com"];
    const other = ["example.net", "other-site.example"];
    const before = await sinkStats(cluster.sinkUrl);
    for (const [k, url] of kumodUrls().entries()) {
      const recipients = [...yahoo, ...other].flatMap((d) => Array.from({ length: 5 }, (_, i) => `s${k}-${i}@${d}`));
      expect((await inject(url, recipients, { authorization: auth() })).result?.success_count).toBe(recipients.length);
    }
    const delta = async (d: string) => accepted(await sinkStats(cluster.sinkUrl), d) - accepted(before, d);
    await waitFor(
      async () => (await Promise.all([...yahoo, ...other].map(delta))).every((n) => n === 5 * KUMODS),
      90_000,
      "every site to deliver",
    );
    await new Promise((r) => setTimeout(r, 3000));
    expect(await Promise.all([...yahoo, ...other].map(delta))).toEqual([...yahoo, ...other].map(() => 5 * KUMODS));
    // The sink counts by client IP: each proxy pod's address is one sending IP.
    const after = await sinkStats(cluster.sinkUrl);
    const sent = (stats: typeof after, pod: string, site: string) =>
      stats.clients?.[cluster.ip(pod)]?.sites[site]?.messages.accepted ?? 0;
    const sentSince = (pod: string, site: string) => sent(after, pod, site) - sent(before, pod, site);
    expect(sentSince("proxy-1", "yahoo"), "proxy-1 at Yahoo").toBe(0);
    expect(sentSince("proxy-0", "yahoo"), "proxy-0 at Yahoo").toBe(yahoo.length * 5 * KUMODS);
    expect(sentSince("proxy-1", "other"), "proxy-1 elsewhere").toBeGreaterThan(0);
    expect(sentSince("proxy-0", "other"), "proxy-0 elsewhere").toBeGreaterThan(0);
    expect(Object.keys(after.clients ?? {}).sort()).toEqual(PROXIES.map((p) => cluster.ip(p)).sort());
    summary.push(
      `sources: with proxy-1 suspended at Yahoo, all ${yahoo.length * 5 * KUMODS} Yahoo/AOL messages left through proxy-0; other sites through both (${sentSince("proxy-0", "other")}/${sentSince("proxy-1", "other")}); the sink saw only the proxies' IPs`,
    );
  });
});

describe("faults", () => {
  it("a kumod restarted under load delivers everything it had spooled, once", async () => {
    const domain = "restart.example";
    await sinkScenario(cluster.sinkUrl, {
      name: "test-hold",
      directives: "off",
      rules: [{ name: "hold", stage: "rcpt", domains: [domain], reply: "451 4.3.0 try again later" }],
    });
    const before = accepted(await sinkStats(cluster.sinkUrl), domain);
    const url = cluster.kumodUrl(1);
    let acceptedByKumod = 0;
    let refused = 0;
    const load = (async () => {
      for (let batch = 0; batch < 40; batch++) {
        const recipients = Array.from({ length: 20 }, (_, i) => `b${batch}-${i}@${domain}`);
        const r = await inject(url, recipients, { authorization: auth() }).catch(() => undefined);
        if (r?.status === 200) acceptedByKumod += r.result?.success_count ?? 0;
        else refused += recipients.length;
      }
    })();
    await waitFor(async () => acceptedByKumod >= 200, 60_000, "200 accepted recipients");
    const stopped = await cluster.container("kumod-1").stop("SIGTERM", 60_000);
    await load;
    expect(stopped).toBe(0);
    expect(acceptedByKumod).toBeGreaterThanOrEqual(200);
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    const restarted = await cluster.startPod("kumod-1");
    // KumoMTA re-reads its spool at start and queues what it finds (crates/kumod/src/spool.rs).
    await waitFor(async () => /spooled in \d+ msgs/.test(restarted.output()), 60_000, "kumod-1 to re-read its spool");
    const delivered = async () => accepted(await sinkStats(cluster.sinkUrl), domain) - before;
    expect(await settledCount(delivered, acceptedByKumod, 120_000, `${acceptedByKumod} held messages delivered`)).toBe(
      acceptedByKumod,
    );
    summary.push(
      `restart: kumod-1 stopped under load after accepting ${acceptedByKumod} (${refused} refused while it stopped); all ${acceptedByKumod} delivered once after restart`,
    );
  });

  it("the injector rides out a kumod restart over the other kumods, and its counts match the sink's", async () => {
    const domain = "ride.example";
    const count = 1200;
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    const before = accepted(await sinkStats(cluster.sinkUrl), domain);
    const { httpUser, httpPassword } = cluster.credentials;
    const run = execa(
      process.execPath,
      [
        "--import",
        "tsx",
        "scripts/inject.ts",
        ...["--url", kumodUrls().join(","), "-u", httpUser, "-p", httpPassword],
        ...["--count", String(count), "--rate", "150", "--batch", "10", "--domains", domain],
        ...["--restart-budget", "90s", "--json", "--no-progress"],
      ],
      { cwd: repoRoot, reject: false },
    );
    await new Promise((r) => setTimeout(r, 2500));
    expect(await cluster.container("kumod-1").stop("SIGTERM", 60_000)).toBe(0);
    await cluster.startPod("kumod-1");
    const result = await run;
    expect(result.exitCode, `${result.stderr}\n${result.stdout}`).toBe(0);
    const out = JSON.parse(result.stdout) as {
      recipients: { accepted: number; failed: number; unknown: number; maybe_duplicated: number };
      targets: { url: string; recipients: { accepted: number } }[];
    };
    expect(out.recipients.accepted + out.recipients.failed + out.recipients.unknown).toBe(count);
    expect(out.recipients.failed).toBe(0);
    const delivered = async () => accepted(await sinkStats(cluster.sinkUrl), domain) - before;
    await waitFor(
      async () => (await delivered()) >= out.recipients.accepted,
      120_000,
      "every accepted message to arrive",
    );
    await new Promise((r) => setTimeout(r, 3000));
    const arrived = await delivered();
    expect(arrived).toBeGreaterThanOrEqual(out.recipients.accepted);
    expect(arrived).toBeLessThanOrEqual(
      out.recipients.accepted + out.recipients.maybe_duplicated + out.recipients.unknown,
    );
    const perKumod = out.targets.map((t) => t.recipients.accepted);
    summary.push(
      `injector: ${out.recipients.accepted} of ${count} accepted across a kumod-1 restart (per kumod ${perKumod.join("/")}, unknown ${out.recipients.unknown}, maybe duplicated ${out.recipients.maybe_duplicated}); the sink got ${arrived}`,
    );
  });

  it("a tsa-daemon restart keeps its suspensions, and every kumod catches up publishing to it", async () => {
    const before = await Promise.all(kumodUrls().map((url) => publishedTo(url, 1)));
    expect(await cluster.container("tsa-1").stop("SIGTERM", 30_000)).toBe(0);
    await publishFromEveryKumod("tsa-drill");
    await new Promise((r) => setTimeout(r, 5000));
    const started = Date.now();
    await cluster.startPod("tsa-1");
    // tsa-daemon saves its state on SIGTERM and loads it at start (tsa.db.state on its claim).
    const suspended = (await http(`${cluster.tsaUrl(1)}/get_suspension_v1/suspended.json`)).body;
    expect(suspended).toMatch(/yahoodns\.net/);
    // The publish queues retry after a minute (the shaping helper's tsa_queue_config).
    for (const [k, url] of kumodUrls().entries()) {
      await waitFor(
        async () => (await publishedTo(url, 1)) > (before[k] ?? 0),
        150_000,
        `kumod-${k} to publish to the restarted tsa-1`,
      );
    }
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    summary.push(
      `tsa restart: tsa-1 kept Yahoo's suspension across its restart; every kumod published to it again within ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
  });

  it("a proxy pod replaced under load: kumod keeps dialling its Service, and every message arrives", async () => {
    const domain = "proxy-drill.example";
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    const before = await sinkStats(cluster.sinkUrl);
    let acceptedByKumods = 0;
    let stop = false;
    const load = (async () => {
      for (let batch = 0; !stop && batch < 200; batch++) {
        const url = kumodUrls()[batch % KUMODS] as string;
        const recipients = Array.from({ length: 10 }, (_, i) => `p${batch}-${i}@${domain}`);
        const r = await inject(url, recipients, { authorization: auth() }).catch(() => undefined);
        acceptedByKumods += r?.result?.success_count ?? 0;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    await waitFor(async () => acceptedByKumods >= 200, 60_000, "200 accepted recipients");
    // Kubernetes' way: the pod stops, leaves its Service's endpoints and comes back under its name with a new IP.
    const replacing = Date.now();
    const { before: oldIp, after: newIp } = await cluster.replacePod("proxy-0");
    const replacedIn = (Date.now() - replacing) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 3000));
    stop = true;
    await load;
    const delivered = async () => accepted(await sinkStats(cluster.sinkUrl), domain) - accepted(before, domain);
    // Mail that met the stopped proxy is deferred and retried (policy/queues.toml: 20 s, doubling to 1 minute).
    // A session cut after the sink's 250 to DATA but before kumod read it is delivered again: at least once, as SMTP
    // promises, and the summary says how many twice.
    const settled = await settledCount(delivered, acceptedByKumods, 150_000, `${acceptedByKumods} messages delivered`);
    expect(settled).toBeGreaterThanOrEqual(acceptedByKumods);
    const after = await sinkStats(cluster.sinkUrl);
    const from = (stats: typeof after, ip: string) => stats.clients?.[ip]?.sites.other?.messages.accepted ?? 0;
    expect(newIp).not.toBe(oldIp);
    expect(from(after, newIp), `proxy-0's new address ${newIp}`).toBeGreaterThan(0);
    summary.push(
      `proxy restart: proxy-0 replaced under load in ${replacedIn.toFixed(1)} s (${oldIp} -> ${newIp}); all ${acceptedByKumods} accepted delivered, ${settled - acceptedByKumods} of them twice (sessions the proxy cut); ${from(after, oldIp) - from(before, oldIp)} from the old address, ${from(after, newIp)} from the new one, ${from(after, cluster.ip("proxy-1")) - from(before, cluster.ip("proxy-1"))} through proxy-1`,
    );
  });

  it("a sink outage defers everything, and every message arrives once when the sink recovers", async () => {
    const domain = "outage.example";
    await sinkScenario(cluster.sinkUrl, {
      name: "test-outage",
      directives: "off",
      rules: [{ name: "outage", stage: "rcpt", domains: [domain], reply: "421 4.3.2 System not accepting messages" }],
    });
    const before = await sinkStats(cluster.sinkUrl);
    const { accepted: acceptedByKumods } = await injectIntoEveryKumod(domain, 30, "o");
    const deferred = async () =>
      ((await sinkStats(cluster.sinkUrl)).domains[domain]?.deferred ?? 0) - (before.domains[domain]?.deferred ?? 0);
    await waitFor(async () => (await deferred()) >= acceptedByKumods, 30_000, "the sink to defer every message");
    const delivered = async () => accepted(await sinkStats(cluster.sinkUrl), domain) - accepted(before, domain);
    expect(await delivered()).toBe(0);
    const recovered = Date.now();
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    // policy/queues.toml retries after 20 s, doubling up to 1 minute.
    await waitFor(async () => (await delivered()) >= acceptedByKumods, 90_000, "every deferred message to arrive");
    const took = (Date.now() - recovered) / 1000;
    expect(await settledCount(delivered, acceptedByKumods, 1000, "every deferred message to arrive")).toBe(
      acceptedByKumods,
    );
    summary.push(`sink outage: ${acceptedByKumods} deferred, all delivered once ${took.toFixed(0)} s after recovery`);
  });

  it("Redis going away and coming back loses nothing, and says whether kumod kept delivering", async () => {
    const domain = "redis-drill.example";
    await sinkScenario(cluster.sinkUrl, ACCEPT_ALL);
    const before = accepted(await sinkStats(cluster.sinkUrl), domain);
    const delivered = async () => accepted(await sinkStats(cluster.sinkUrl), domain) - before;
    await cluster.stopRedis();
    const { accepted: acceptedByKumods, refused } = await injectIntoEveryKumod(domain, 10, "r");
    await new Promise((r) => setTimeout(r, 15_000));
    const duringOutage = await delivered();
    await cluster.startRedis();
    expect(await settledCount(delivered, acceptedByKumods, 120_000, "every accepted message to arrive")).toBe(
      acceptedByKumods,
    );
    expect(acceptedByKumods + refused).toBe(10 * KUMODS);
    summary.push(
      `redis outage: kumod accepted ${acceptedByKumods} (refused ${refused}) without Redis and delivered ${duringOutage} of them before it came back; all ${acceptedByKumods} delivered once after`,
    );
  });

  it("ends kumod within seconds, saying why, when Dragonfly is unreachable or refuses the password", async () => {
    const expectQuickExit = async (overrides: { env?: Record<string, string> }) => {
      const started = Date.now();
      const c = await cluster.launchPod("kumod-2", overrides);
      const code = await Promise.race([c.exited, new Promise<"hung">((r) => setTimeout(() => r("hung"), 30_000))]);
      if (code === "hung") await c.stop("SIGKILL");
      expect(code, tail(c.output())).not.toBe("hung");
      expect(code).not.toBe(0);
      expect(c.output()).toContain(
        "kumomta-tilt policy: Dragonfly at redis://dragonfly.kumomta.svc.cluster.local:6379 did not accept a connection",
      );
      expect(c.output()).not.toContain(cluster.credentials.dragonflyPassword);
      return (Date.now() - started) / 1000;
    };
    await cluster.container("kumod-2").stop();
    const wrongPassword = await expectQuickExit({ env: { DRAGONFLY_PASSWORD: "not-the-secret" } });
    await cluster.stopRedis();
    const unreachable = await expectQuickExit({});
    await cluster.startRedis();
    await cluster.startPod("kumod-2");
    summary.push(
      `dragonfly: kumod exits with a clear line ${unreachable.toFixed(1)} s after start when it is unreachable, ${wrongPassword.toFixed(1)} s with a wrong password; starts once it is back`,
    );
  });
});
