/**
 * Per client IP (the TCP peer; with KumoProxy, one proxy pod per sending IP): counters, rules that select client
 * IPs, and the shipped one-IP throttling scenarios. Real SMTP clients connect from distinct loopback addresses.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { clientIp } from "../../sink/src/clients.ts";
import { type ConfigError, parseConfig, type ScenarioDef, validateScenario } from "../../sink/src/rules/config.ts";
import { ScenarioControl } from "../../sink/src/rules/control.ts";
import { CompiledScenario, newDecision, type PeerState, STAGE_MAIL, STAGE_RCPT } from "../../sink/src/rules/engine.ts";
import { Random } from "../../sink/src/rules/random.ts";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";
import { RawSmtp, type RunningSink, startSink } from "./helpers.ts";

const run = promisify(execFile);

interface Outcomes {
  accepted: number;
  deferred: number;
  bounced: number;
}
interface Counts {
  connections: number;
  messages: Outcomes;
  recipients: Outcomes;
}
interface ClientStatsJson {
  chosen_clients: Record<string, string | null>;
  clients: Record<string, Counts & { sites: Record<string, Counts> }>;
}

const CONFIG = `
scenarios:
  counting:
    directives: rcpt
    rules:
      - { name: busy-for-4, stage: mail, clients: [127.0.0.4], reply: "451 4.3.2 System busy" }
      - { name: bounce-data, stage: data, domains: [bounce.test], reply: "550 5.7.1 refused" }
  ranges:
    rules:
      - { name: range, clients: [127.0.0.0/30, 127.0.0.9], reply: "450 4.7.1 not from {ip}" }
`;

let dir: string;
let sink: RunningSink;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "sink-clients-"));
  writeFileSync(join(dir, "sink.yaml"), CONFIG);
  sink = await startSink({
    SINK_CONFIG: join(dir, "sink.yaml"),
    SINK_SCENARIO: "counting",
    SINK_SITE_PORTS: "yahoo=0",
    SINK_LOG_CONNECTIONS: "false",
  });
});
afterAll(async () => {
  expect(await sink.stop()).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

async function clientStats(s: RunningSink): Promise<ClientStatsJson> {
  return (await (await s.http("/api/stats")).json()) as ClientStatsJson;
}

async function select(s: RunningSink, name: string): Promise<{ chosen_clients: Record<string, string | null> }> {
  const res = await s.http("/api/scenario", { method: "PUT", body: JSON.stringify({ name }) });
  expect(res.status).toBe(200);
  return (await res.json()) as { chosen_clients: Record<string, string | null> };
}

/** One message over its own connection from `from`, with nodemailer; the SMTP reply that ended it. */
async function mail(port: number, from: string, to: string[]): Promise<string> {
  const transport = nodemailer.createTransport({ host: "127.0.0.1", port, localAddress: from, ignoreTLS: true });
  try {
    const info = await transport.sendMail({ from: "s@sender.test", to, text: "hello\n" });
    return info.response;
  } catch (err) {
    return (err as { response?: string }).response ?? String(err);
  } finally {
    transport.close();
  }
}

/** The sink_client_* samples of /metrics, by metric name and labels. */
async function clientSamples(s: RunningSink): Promise<Record<string, number>> {
  const text = await (await s.http("/metrics")).text();
  return Object.fromEntries(
    text
      .split("\n")
      .filter((l) => l.startsWith("sink_client_"))
      .map((l) => {
        const at = l.lastIndexOf(" ");
        return [l.slice(0, at), Number(l.slice(at + 1))];
      }),
  );
}

/** The samples /metrics must have for the given per-client JSON. */
function expectedSamples(clients: ClientStatsJson["clients"]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [ip, c] of Object.entries(clients)) {
    for (const [site, s] of Object.entries(c.sites)) {
      const labels = `client_ip="${ip}",site="${site}"`;
      out[`sink_client_connections_total{${labels}}`] = s.connections;
      for (const o of ["accepted", "deferred", "bounced"] as const) {
        out[`sink_client_messages_total{${labels},outcome="${o}"}`] = s.messages[o];
        out[`sink_client_recipients_total{${labels},outcome="${o}"}`] = s.recipients[o];
      }
    }
  }
  return out;
}

const counts = (connections: number, messages: number[], recipients: number[]): Counts => ({
  connections,
  messages: { accepted: messages[0] ?? 0, deferred: messages[1] ?? 0, bounced: messages[2] ?? 0 },
  recipients: { accepted: recipients[0] ?? 0, deferred: recipients[1] ?? 0, bounced: recipients[2] ?? 0 },
});

describe("per-client counters", () => {
  it("count connections, messages and recipients per client IP and site, in /api/stats and /metrics", async () => {
    requireTool("swaks", HOW_TO_GET.swaks);
    const other = sink.smtpPort;
    const yahoo = sink.sitePorts.yahoo as number;
    // 127.0.0.2 (nodemailer): on `other` one message accepted, one accepted for one of two recipients (the
    // tempfail directive defers the other at RCPT), one refused after DATA; on `yahoo` one accepted.
    expect(await mail(other, "127.0.0.2", ["a@ok.test", "b@ok.test"])).toMatch(/^250 /);
    expect(await mail(other, "127.0.0.2", ["c@ok.test", "tempfail@ok.test"])).toMatch(/^250 /);
    expect(await mail(other, "127.0.0.2", ["d@bounce.test"])).toBe("550 5.7.1 refused");
    expect(await mail(yahoo, "127.0.0.2", ["e@yahoo.test"])).toMatch(/^250 /);
    // 127.0.0.3 (swaks, yahoo): two accepted, one whose only recipient is refused at RCPT (no message is sent).
    const swaks = (to: string) =>
      run("swaks", ["--server", `127.0.0.1:${yahoo}`, "--local-interface", "127.0.0.3", "--to", to]).then(
        (r) => r.stdout,
        (err: { stdout: string }) => err.stdout,
      );
    expect(await swaks("x@yahoo.test")).toMatch(/<- {2}250 2\.0\.0 Ok: queued/);
    expect(await swaks("y@yahoo.test")).toMatch(/<- {2}250 2\.0\.0 Ok: queued/);
    expect(await swaks("permfail@yahoo.test")).toMatch(/<\*\* 550 5\.1\.1/);
    // 127.0.0.4 (nodemailer, yahoo): refused at MAIL by a rule for that client only.
    expect(await mail(yahoo, "127.0.0.4", ["f@yahoo.test"])).toBe("451 4.3.2 System busy");

    const { clients } = await clientStats(sink);
    expect(clients).toEqual({
      "127.0.0.2": {
        ...counts(4, [3, 0, 1], [4, 1, 1]),
        sites: { other: counts(3, [2, 0, 1], [3, 1, 1]), yahoo: counts(1, [1, 0, 0], [1, 0, 0]) },
      },
      "127.0.0.3": { ...counts(3, [2, 0, 0], [2, 0, 1]), sites: { yahoo: counts(3, [2, 0, 0], [2, 0, 1]) } },
      "127.0.0.4": { ...counts(1, [0, 1, 0], [0, 0, 0]), sites: { yahoo: counts(1, [0, 1, 0], [0, 0, 0]) } },
    });
    expect(await clientSamples(sink)).toEqual(expectedSamples(clients));
  });

  it("name IPv4 peers of a dual-stack listener as plain IPv4, and give IPs past SINK_MAX_CLIENTS one _other", async () => {
    expect(clientIp("::ffff:10.1.2.3")).toBe("10.1.2.3");
    expect(clientIp("::FFFF:10.1.2.3")).toBe("10.1.2.3");
    expect(clientIp("fd00::1")).toBe("fd00::1");
    const dual = await startSink({ SINK_HOST: "::", SINK_MAX_CLIENTS: "2", SINK_LOG_CONNECTIONS: "false" });
    try {
      for (const from of ["127.0.0.2", "127.0.0.3", "127.0.0.5", "127.0.0.6"]) {
        expect(await mail(dual.smtpPort, from, ["a@ok.test"])).toMatch(/^250 /);
      }
      const { clients } = await clientStats(dual);
      expect(Object.keys(clients)).toEqual(["127.0.0.2", "127.0.0.3", "_other"]);
      expect(clients._other).toEqual({
        ...counts(2, [2, 0, 0], [2, 0, 0]),
        sites: { other: counts(2, [2, 0, 0], [2, 0, 0]) },
      });
      const samples = await clientSamples(dual);
      expect(samples).toEqual(expectedSamples(clients));
      expect(samples['sink_client_connections_total{client_ip="_other",site="other"}']).toBe(2);
    } finally {
      await dual.stop();
    }
  });
});

describe("rules with clients", () => {
  it("apply to the listed addresses and CIDR ranges only, with {ip} the client's address", async () => {
    await select(sink, "ranges");
    const rcpt = async (from: string) => {
      const c = await RawSmtp.open(sink.smtpPort, from);
      await c.hello();
      await c.cmd("MAIL FROM:<s@sender.test>");
      const reply = await c.cmd("RCPT TO:<a@ok.test>");
      c.close();
      return reply;
    };
    expect(await rcpt("127.0.0.2")).toBe("450 4.7.1 not from 127.0.0.2");
    expect(await rcpt("127.0.0.3")).toBe("450 4.7.1 not from 127.0.0.3");
    expect(await rcpt("127.0.0.9")).toBe("450 4.7.1 not from 127.0.0.9");
    expect(await rcpt("127.0.0.4")).toBe("250 2.1.5 Ok");
    expect(await rcpt("127.0.0.5")).toBe("250 2.1.5 Ok");
    await select(sink, "counting");
  });

  it("refuse an invalid clients value with every problem and its path", async () => {
    const res = await sink.http("/api/scenario", {
      method: "PUT",
      body: JSON.stringify({
        name: "bad",
        rules: [
          { name: "a", clients: "first", reply: "451 4.7.1 a" },
          {
            name: "b",
            clients: ["10.0.0.300", "10.0.0.0/33", "fd00::/129", 42, "10.0.0.1/8/1", "10.1.0.0/16"],
            reply: "451 4.7.1 b",
          },
          { name: "c", clients: [], reply: "451 4.7.1 c" },
        ],
      }),
    });
    expect(res.status).toBe(400);
    const hint =
      'must be "one" (the first client IP that reaches the rule) or a non-empty list of IP addresses and CIDR ranges, e.g. [10.0.0.5, 10.1.0.0/16, "fd00::/8"]';
    const not = "is not an IP address or CIDR range (a.b.c.d, a.b.c.d/0-32, IPv6 or IPv6/0-128)";
    expect(((await res.json()) as { details: string[] }).details).toEqual([
      `scenario.rules[0].clients: ${hint}`,
      `scenario.rules[1].clients[0]: "10.0.0.300" ${not}`,
      `scenario.rules[1].clients[1]: "10.0.0.0/33" ${not}`,
      `scenario.rules[1].clients[2]: "fd00::/129" ${not}`,
      `scenario.rules[1].clients[3]: 42 ${not}`,
      `scenario.rules[1].clients[4]: "10.0.0.1/8/1" ${not}`,
      `scenario.rules[2].clients: ${hint}`,
    ]);
    // The same check guards the rules file.
    try {
      parseConfig("scenarios:\n  s:\n    rules:\n      - { name: r, clients: one-ip, reply: '451 4.7.1 r' }\n");
      expect.unreachable();
    } catch (err) {
      expect((err as ConfigError).details).toEqual([`scenarios.s.rules[0].clients: ${hint}`]);
    }
    expect((await clientStats(sink)).chosen_clients).toEqual({});
  });
});

describe("rules with clients in the engine", () => {
  const peer = (ip: string, site = "yahoo"): PeerState => ({
    ip,
    site,
    boundTo: null,
    siteRules: null,
    throttleCounts: null,
  });
  function compile(rules: unknown[]): CompiledScenario {
    const errors: string[] = [];
    const def = validateScenario("t", { rules }, {}, "t", errors);
    expect(errors).toEqual([]);
    return new CompiledScenario(def as ScenarioDef, {}, new Random(1), () => {});
  }
  const codes = (compiled: CompiledScenario, p: PeerState, n: number, stage = STAGE_RCPT): number[] => {
    const d = newDecision();
    return Array.from({ length: n }, () => {
      compiled.evaluate(stage, p, ["x.example"], 0, stage === STAGE_RCPT ? 1 : 0, d);
      return d.code;
    });
  };
  afterEach(() => {
    vi.useRealTimers();
  });

  it("count only the listed clients' events against a throttle", () => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2026-01-01T00:00:00Z") });
    const compiled = compile([
      { name: "t", clients: ["192.0.2.0/28"], throttle: { max: 2, per: "minute" }, reply: "421 4.7.0 t" },
    ]);
    expect(codes(compiled, peer("198.51.100.1"), 5)).toEqual([0, 0, 0, 0, 0]);
    expect(codes(compiled, peer("192.0.2.9"), 3)).toEqual([0, 0, 421]);
    expect(codes(compiled, peer("192.0.2.3"), 1)).toEqual([421]);
  });

  it("with one: the first client that reaches the rule is chosen, kept, and counted alone", () => {
    vi.useFakeTimers({ toFake: ["Date"], now: new Date("2026-01-01T00:00:00Z") });
    const compiled = compile([
      {
        name: "one",
        stage: "mail",
        sites: ["yahoo"],
        clients: "one",
        throttle: { max: 2, per: "minute" },
        reply: "421 4.7.0 x",
      },
    ]);
    expect(compiled.chosenClients()).toEqual({ one: null });
    // Another site does not reach the rule, so it does not choose.
    expect(codes(compiled, peer("192.0.2.1", "google"), 2, STAGE_MAIL)).toEqual([0, 0]);
    expect(compiled.chosenClients()).toEqual({ one: null });
    // Chosen at its first event, though under the throttle's max; the others' events do not count.
    expect(codes(compiled, peer("192.0.2.2"), 1, STAGE_MAIL)).toEqual([0]);
    expect(compiled.chosenClients()).toEqual({ one: "192.0.2.2" });
    expect(codes(compiled, peer("192.0.2.3"), 3, STAGE_MAIL)).toEqual([0, 0, 0]);
    expect(codes(compiled, peer("192.0.2.2"), 2, STAGE_MAIL)).toEqual([0, 421]);
    expect(compiled.chosenClients()).toEqual({ one: "192.0.2.2" });
  });
});

describe("the shipped one-IP scenarios", () => {
  let shipped: RunningSink;
  beforeAll(async () => {
    shipped = await startSink({
      SINK_SCENARIO: "yahoo-ip-throttle",
      SINK_SITE_PORTS: "google=0,yahoo=0,outlook=0",
      SINK_LOG_CONNECTIONS: "false",
    });
  });
  afterAll(async () => {
    await shipped.stop();
  });

  const tss04 = (ip: string) =>
    `421 4.7.0 [TSS04] Messages from ${ip} temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes`;

  it("yahoo-ip-throttle: Yahoo defers one sending IP with TSS04 at MAIL FROM; other IPs and sites deliver", async () => {
    const { google, yahoo } = shipped.sitePorts as Record<string, number>;
    const chosen = async () => ({
      scenario: ((await (await shipped.http("/api/scenario")).json()) as ClientStatsJson).chosen_clients,
      stats: (await clientStats(shipped)).chosen_clients,
    });
    expect(await chosen()).toEqual({
      scenario: { "yahoo-tss04-one-ip": null },
      stats: { "yahoo-tss04-one-ip": null },
    });
    // Google is not the rule's site: its first client is not the chosen one.
    expect(await mail(google as number, "127.0.0.2", ["a@gmail.com"])).toMatch(/^250 /);
    const c = await RawSmtp.open(yahoo as number, "127.0.0.3");
    await c.hello();
    const reply = (await c.cmd("MAIL FROM:<s@sender.test>")) ?? "";
    expect(reply).toBe(tss04("127.0.0.3"));
    expect(await c.closedByServer()).toBe(true);
    // What KumoMTA's TSA rules for Yahoo match (policy-extras and community shaping.toml).
    expect(reply).toMatch(/\[TS?S04\]/);
    expect(reply).toMatch(/421 4\.7\.0 \[TSS04\]/);
    const picked = { "yahoo-tss04-one-ip": "127.0.0.3" };
    expect(await chosen()).toEqual({ scenario: picked, stats: picked });
    expect(await mail(yahoo as number, "127.0.0.2", ["b@yahoo.com"])).toMatch(/^250 /);
    expect(await mail(yahoo as number, "127.0.0.3", ["c@yahoo.com"])).toBe(tss04("127.0.0.3"));
    expect(await mail(google as number, "127.0.0.3", ["d@gmail.com"])).toMatch(/^250 /);
    expect(await chosen()).toEqual({ scenario: picked, stats: picked });
    const { clients } = await clientStats(shipped);
    expect(clients["127.0.0.3"]?.sites).toEqual({
      yahoo: counts(2, [0, 2, 0], [0, 0, 0]),
      google: counts(1, [1, 0, 0], [1, 0, 0]),
    });
    expect(clients["127.0.0.2"]?.sites.yahoo).toEqual(counts(1, [1, 0, 0], [1, 0, 0]));

    // Selected again, it chooses again: now 127.0.0.2 comes first.
    expect((await select(shipped, "yahoo-ip-throttle")).chosen_clients).toEqual({ "yahoo-tss04-one-ip": null });
    expect(await mail(yahoo as number, "127.0.0.2", ["e@yahoo.com"])).toBe(tss04("127.0.0.2"));
    expect(await mail(yahoo as number, "127.0.0.3", ["f@yahoo.com"])).toMatch(/^250 /);
    expect((await clientStats(shipped)).chosen_clients).toEqual({ "yahoo-tss04-one-ip": "127.0.0.2" });
  });

  it("outlook-ip-throttle: Microsoft defers one sending IP's recipients with S775; other IPs deliver", async () => {
    const outlook = shipped.sitePorts.outlook as number;
    expect((await select(shipped, "outlook-ip-throttle")).chosen_clients).toEqual({ "outlook-s775-one-ip": null });
    const reply = await mail(outlook, "127.0.0.5", ["a@outlook.com"]);
    expect(reply).toBe(
      "451 4.7.650 The mail server [127.0.0.5] has been temporarily rate limited due to IP reputation. For e-mail delivery information, see https://aka.ms/postmaster (S775)",
    );
    expect(reply).toMatch(/The mail server.*has been temporarily rate limited/);
    expect(await mail(outlook, "127.0.0.2", ["b@outlook.com"])).toMatch(/^250 /);
    expect(await mail(outlook, "127.0.0.5", ["c@outlook.com"])).toMatch(/^451 4\.7\.650 /);
    const { clients, chosen_clients } = await clientStats(shipped);
    expect(chosen_clients).toEqual({ "outlook-s775-one-ip": "127.0.0.5" });
    expect(clients["127.0.0.5"]?.sites.outlook).toEqual(counts(2, [0, 0, 0], [0, 2, 0]));
  });
});

describe("scenario control", () => {
  it("chooses again when the scenario is selected again or the rules file is reloaded", () => {
    const config = parseConfig(
      "scenarios:\n  s:\n    rules:\n      - { name: r, stage: mail, clients: one, reply: '451 4.7.1 r' }\n",
    );
    const control = new ScenarioControl(config, "s", 1, () => {});
    const mailFrom = (ip: string) =>
      control.active.evaluate(
        STAGE_MAIL,
        { ip, site: "other", boundTo: null, siteRules: null, throttleCounts: null },
        [],
        0,
        0,
        newDecision(),
      );
    mailFrom("192.0.2.1");
    expect(control.describe()).toMatchObject({ chosen_clients: { r: "192.0.2.1" } });
    control.select("s");
    expect(control.describe()).toMatchObject({ chosen_clients: { r: null } });
    mailFrom("192.0.2.2");
    mailFrom("192.0.2.1");
    expect(control.describe()).toMatchObject({ chosen_clients: { r: "192.0.2.2" } });
    control.reload(config);
    expect(control.describe()).toMatchObject({ chosen_clients: { r: null } });
  });
});
