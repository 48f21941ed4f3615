/** Provider sites over real TCP: the port a connection arrives on decides how the sink greets, throttles and counts. */

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../sink/src/rules/config.ts";
import { parseSettings } from "../../sink/src/settings.ts";
import { siteGreeting } from "../../sink/src/sites.ts";
import { RawSmtp, type RunningSink, runSinkToExit, SINK_DIR, sendMessage, startSink } from "./helpers.ts";

const CONFIG = `
scenarios:
  per-site:
    rules:
      - name: google-rate
        sites: [google]
        throttle: { max: 2, per: second }
        reply: "421 4.7.28 google rate limit"
      - name: yahoo-per-connection
        sites: [yahoo]
        throttle: { max: 2, per: connection }
        reply: "421 4.7.0 Max message per connection reached, closing transmission channel"
      - name: outlook-mail
        stage: mail
        sites: [outlook]
        reply: "451 4.7.500 Server busy"
      - name: acme-domain
        stage: data
        sites: [acme, other]
        domains: [bounce.test]
        reply: "550 5.1.1 no such user"
`;

let dir: string;
let sink: RunningSink;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "sink-sites-"));
  writeFileSync(join(dir, "sink.yaml"), CONFIG);
  sink = await startSink({
    SINK_CONFIG: join(dir, "sink.yaml"),
    SINK_HOSTNAME: "sink.test",
    SINK_SITE_PORTS: "google=0, yahoo=0,outlook=0,acme=0",
  });
});
afterAll(async () => {
  expect(await sink.stop()).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

function port(site: string): number {
  const p = site === "other" ? sink.smtpPort : sink.sitePorts[site];
  if (p === undefined) throw new Error(`no port for site ${site}`);
  return p;
}

/** Greeting and EHLO reply of a fresh connection to a site's port. */
async function greet(site: string): Promise<{ banner: string | null; ehlo: string[]; helo: string | null }> {
  const c = await RawSmtp.open(port(site));
  const banner = await c.reply();
  const ehlo = ((await c.cmd("EHLO client.test")) ?? "").split("\r\n");
  const helo = await c.cmd("HELO client.test");
  c.close();
  return { banner, ehlo, helo };
}

async function session(site: string): Promise<RawSmtp> {
  const c = await RawSmtp.open(port(site));
  await c.hello();
  return c;
}

describe("listening", () => {
  it("reports the port bound for each site, distinct from the default SMTP port", () => {
    expect(Object.keys(sink.sitePorts)).toEqual(["google", "yahoo", "outlook", "acme"]);
    const ports = [sink.smtpPort, ...Object.values(sink.sitePorts)];
    expect(new Set(ports).size).toBe(5);
  });
});

describe("greetings", () => {
  it("greets as the provider of the port: banner, EHLO and HELO host names", async () => {
    const google = await greet("google");
    expect(google.banner).toMatch(/^220 mx\.google\.com ESMTP .* - gsmtp$/);
    expect(google.ehlo[0]).toBe("250-mx.google.com Hello");
    expect(google.helo).toBe("250 mx.google.com");
    const yahoo = await greet("yahoo");
    expect(yahoo.banner).toMatch(/^220 mta7\.am0\.yahoodns\.net ESMTP/);
    expect(yahoo.ehlo[0]).toBe("250-mta7.am0.yahoodns.net Hello");
    const outlook = await greet("outlook");
    expect(outlook.banner).toMatch(/^220 [A-Z0-9]+\.olc\.protection\.outlook\.com Microsoft ESMTP MAIL Service ready/);
    expect(outlook.ehlo[0]).toMatch(/^250-[A-Z0-9]+\.olc\.protection\.outlook\.com Hello$/);
  });

  it("greets as SINK_HOSTNAME on the default port and on sites without a provider look", async () => {
    for (const site of ["other", "acme"]) {
      const g = await greet(site);
      expect(g.banner).toBe("220 sink.test ESMTP kumomta-tilt sink");
      expect(g.ehlo[0]).toBe("250-sink.test Hello");
      expect(g.helo).toBe("250 sink.test");
    }
  });

  it("advertises the same extensions on every site", async () => {
    const extensions = async (site: string) => (await greet(site)).ehlo.slice(1);
    const other = await extensions("other");
    expect(other.join("\n")).toMatch(/PIPELINING[\s\S]*8BITMIME[\s\S]*SMTPUTF8[\s\S]*ENHANCEDSTATUSCODES/);
    for (const site of ["google", "yahoo", "outlook", "acme"]) expect(await extensions(site)).toEqual(other);
  });
});

describe("rules with sites", () => {
  it("throttle per second only what arrives on their site's port", async () => {
    await selectScenario("per-site");
    const rcpts = ["1@gmail.com", "2@example.org", "3@gmail.com", "4@gmail.com", "5@gmail.com"];
    // On the default port the same recipients are never throttled...
    const other = await session("other");
    await other.write(`MAIL FROM:<s@sender.test>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join("")}`);
    expect(await other.replies(6)).toEqual(["250 2.1.0 Ok", ...rcpts.map(() => "250 2.1.5 Ok")]);
    other.close();
    // ...on the Google port every recipient counts, whatever its domain: 2 per second pass, then 421.
    const google = await session("google");
    await google.write(`MAIL FROM:<s@sender.test>\r\n${rcpts.map((r) => `RCPT TO:<${r}>\r\n`).join("")}`);
    const replies = (await google.replies(6)).slice(1);
    const refused = replies.filter((r) => r === "421 4.7.28 google rate limit").length;
    // 5 recipients against 2 per second: 3 refused, fewer only if the one-second window rolled over meanwhile.
    expect(refused).toBeGreaterThanOrEqual(1);
    expect(replies.slice(0, 2)).toEqual(["250 2.1.5 Ok", "250 2.1.5 Ok"]);
    expect(await google.closedByServer()).toBe(true);
  });

  it("count per connection on their site only, and apply at MAIL on theirs only", async () => {
    await selectScenario("per-site");
    const yahoo = await session("yahoo");
    expect((await sendMessage(yahoo, ["a@yahoo.com"]))[3]).toBe("250 2.0.0 Ok: queued");
    expect((await sendMessage(yahoo, ["b@yahoo.com"]))[3]).toBe("250 2.0.0 Ok: queued");
    await yahoo.write("MAIL FROM:<s@sender.test>\r\nRCPT TO:<c@yahoo.com>\r\n");
    expect((await yahoo.replies(2))[1]).toBe(
      "421 4.7.0 Max message per connection reached, closing transmission channel",
    );
    const other = await session("other");
    for (let i = 0; i < 4; i++) expect((await sendMessage(other, [`${i}@yahoo.com`]))[3]).toBe("250 2.0.0 Ok: queued");
    expect(await other.cmd("MAIL FROM:<s@sender.test>")).toBe("250 2.1.0 Ok");
    other.close();
    const outlook = await session("outlook");
    expect(await outlook.cmd("MAIL FROM:<s@sender.test>")).toBe("451 4.7.500 Server busy");
    outlook.close();
  });

  it("combine sites and domains: both must match", async () => {
    await selectScenario("per-site");
    for (const [site, code] of [
      ["acme", "550"],
      ["other", "550"],
      ["yahoo", "250"],
    ] as const) {
      const c = await session(site);
      const replies = await sendMessage(c, ["x@bounce.test"]);
      expect(replies[replies.length - 1]?.slice(0, 3), site).toBe(code);
      c.close();
    }
    const c = await session("acme");
    expect((await sendMessage(c, ["x@fine.test"]))[3]).toBe("250 2.0.0 Ok: queued");
    c.close();
  });
});

describe("per-site counters", () => {
  it("count connections and recipients by outcome per site in /api/stats and /metrics", async () => {
    await selectScenario("per-site");
    const before = await sink.stats();
    const acme = await session("acme");
    await sendMessage(acme, ["a@fine.test", "b@fine.test"]);
    await sendMessage(acme, ["c@bounce.test", "d@fine.test"]);
    acme.close();
    const google = await session("google");
    await sendMessage(google, ["x@gmail.com"]);
    google.close();
    const outlook = await session("outlook");
    await outlook.cmd("MAIL FROM:<s@sender.test>");
    outlook.close();
    const after = await sink.stats();
    const delta = (site: string) => {
      const b = before.sites?.[site] ?? { connections: 0, accepted: 0, deferred: 0, bounced: 0 };
      const a = after.sites?.[site];
      if (!a) throw new Error(`no counters for site ${site}`);
      return {
        connections: a.connections - b.connections,
        accepted: a.accepted - b.accepted,
        deferred: a.deferred - b.deferred,
        bounced: a.bounced - b.bounced,
      };
    };
    expect(delta("acme")).toEqual({ connections: 1, accepted: 2, deferred: 0, bounced: 2 });
    expect(delta("other")).toEqual({ connections: 0, accepted: 0, deferred: 0, bounced: 0 });
    // Accepted after DATA, or deferred at RCPT if the earlier test filled this second's Google rate; a message
    // refused at MAIL has no recipients yet.
    const g = delta("google");
    expect(g.connections).toBe(1);
    expect(g.accepted + g.deferred).toBe(1);
    expect(delta("outlook")).toEqual({ connections: 1, accepted: 0, deferred: 0, bounced: 0 });
    expect(Object.keys(after.sites ?? {}).sort()).toEqual(["acme", "google", "other", "outlook", "yahoo"]);
    const metrics = await (await sink.http("/metrics")).text();
    const sample = (name: string) =>
      Number(metrics.match(new RegExp(`^${name.replace(/[{}]/g, "\\$&")} (\\d+)$`, "m"))?.[1]);
    expect(sample('sink_site_connections_total{site="acme"}')).toBe(after.sites?.acme?.connections);
    expect(sample('sink_site_recipients_total{site="acme",outcome="bounced"}')).toBe(after.sites?.acme?.bounced);
    expect(sample('sink_site_recipients_total{site="yahoo",outcome="accepted"}')).toBe(after.sites?.yahoo?.accepted);
  });
});

describe("the shipped realistic scenario", () => {
  let realistic: RunningSink;
  beforeAll(async () => {
    realistic = await startSink({ SINK_SCENARIO: "realistic", SINK_SITE_PORTS: "google=0,yahoo=0,outlook=0" });
  });
  afterAll(async () => {
    await realistic.stop();
  });

  /** MAIL, RCPT and RSET `n` times on one connection (no DATA: its random deferrals would close the session). */
  async function rcptCodes(portNumber: number, domain: string, n: number): Promise<string[]> {
    const c = await RawSmtp.open(portNumber);
    await c.hello();
    const codes: string[] = [];
    for (let i = 0; i < n && !c.closed; i++) {
      await c.write(`MAIL FROM:<s@sender.test>\r\nRCPT TO:<u${i}@${domain}>\r\nRSET\r\n`);
      const replies = await c.replies(3);
      codes.push(replies[1] ?? "");
    }
    c.close();
    return codes;
  }

  it("closes a Yahoo connection after 20 recipients, for every Yahoo domain, on the Yahoo port only", async () => {
    const yahoo = await rcptCodes(realistic.sitePorts.yahoo as number, "aol.com", 21);
    expect(yahoo.slice(0, 20).every((r) => r === "250 2.1.5 Ok")).toBe(true);
    expect(yahoo[20]).toBe("421 4.7.0 Max message per connection reached, closing transmission channel");
    const other = await rcptCodes(realistic.smtpPort, "yahoo.com", 25);
    expect(other.every((r) => r === "250 2.1.5 Ok")).toBe(true);
  });

  it("rate-limits Google over 50 recipients per second with the 4.7.28 text, on the Google port only", async () => {
    const rcpts = Array.from({ length: 120 }, (_, i) => `RCPT TO:<u${i}@gmail.com>\r\n`).join("");
    const run = async (portNumber: number) => {
      const c = await RawSmtp.open(portNumber);
      await c.hello();
      await c.write(`MAIL FROM:<s@sender.test>\r\n${rcpts}`);
      const replies = (await c.replies(121)).slice(1);
      c.close();
      return replies;
    };
    const google = await run(realistic.sitePorts.google as number);
    expect(google.some((r) => /^421 4\.7\.28 \[127\.0\.0\.1\] Our system has detected an unusual rate/.test(r))).toBe(
      true,
    );
    expect((await run(realistic.smtpPort)).every((r) => r === "250 2.1.5 Ok")).toBe(true);
  });
});

describe("the shipped configuration", () => {
  it("gives every site of sink-config's site-ports a provider greeting, and rules only name those sites", () => {
    const kustomization = parseYaml(readFileSync(join(SINK_DIR, "config", "kustomization.yaml"), "utf8")) as {
      configMapGenerator: { literals?: string[] }[];
    };
    const literal = kustomization.configMapGenerator
      .flatMap((g) => g.literals ?? [])
      .find((l) => l.startsWith("site-ports="));
    const { sitePorts } = parseSettings({ SINK_SITE_PORTS: literal?.slice("site-ports=".length) }, SINK_DIR);
    const sites = sitePorts.map((s) => s.site);
    expect(sites).toEqual(["google", "yahoo", "outlook"]);
    for (const site of sites) expect(siteGreeting(site, "fallback.test").host, site).not.toBe("fallback.test");
    const config = parseConfig(readFileSync(join(SINK_DIR, "config", "sink.yaml"), "utf8"));
    const named = Object.values(config.scenarios).flatMap((sc) => sc.rules.flatMap((r) => r.sites ?? []));
    expect(named.length).toBeGreaterThan(0);
    for (const site of named) expect([...sites, "other"]).toContain(site);
  });
});

describe("SINK_SITE_PORTS at start", () => {
  it("refuses invalid values with every problem listed (exit 2)", async () => {
    const { code, logs } = await runSinkToExit({
      SINK_SMTP_PORT: "2600",
      SINK_SITE_PORTS: "Google=2601,yahoo=2600,other=2602,outlook,yahoo=2603",
    });
    expect(code).toBe(2);
    const details = String(
      (logs.find((l) => l.msg === "invalid environment")?.details as string[] | undefined)?.join("\n"),
    );
    expect(details).toMatch(/site "Google" must be a lower-case label/);
    expect(details).toMatch(/port 2600 of yahoo is already used by SINK_SMTP_PORT/);
    expect(details).toMatch(/site "other" is the site of SINK_SMTP_PORT/);
    expect(details).toMatch(/"outlook" is not site=port/);
    expect(details).toMatch(/site yahoo is listed twice/);
  });

  it("exits 1 naming the port when a site port is taken", async () => {
    const taken: Server = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const busy = (taken.address() as { port: number }).port;
    try {
      const { code, logs } = await runSinkToExit({ SINK_SITE_PORTS: `google=${busy}` });
      expect(code).toBe(1);
      const failure = logs.find((l) => l.msg === "cannot listen");
      expect(failure?.details).toEqual([expect.stringMatching(`^SMTP port of site google: .*EADDRINUSE.*:${busy}$`)]);
    } finally {
      taken.close();
    }
  });
});

async function selectScenario(name: string): Promise<void> {
  const res = await sink.http("/api/scenario", { method: "PUT", body: JSON.stringify({ name }) });
  expect(res.status).toBe(200);
}
