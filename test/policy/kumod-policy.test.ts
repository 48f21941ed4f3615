import { rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  callsOf,
  credentialsDir,
  type HarnessOutput,
  kumodEnv,
  onlyCall,
  runPolicy,
  type StepResult,
  step,
} from "./lua-harness.ts";

const SINK_MX = "sink.kumomta.svc.cluster.local:2525";
const USER = "tilt-injector";
// Characters that are URL syntax, a Lua pattern magic character and a space, so
// both the constant-time compare and the file read are exercised on awkward bytes.
const PASSWORD = "Zx9%p@ss:w0rd/with spaces&#?";

// Real provider domains (matched by MX when DNS works), plain test domains,
// IP literals and names that could never resolve.
const RECIPIENTS = [
  "alice@gmail.com",
  "bob@googlemail.com",
  "carol@yahoo.com",
  "dan@outlook.com",
  "erin@hotmail.com",
  "frank@orange.fr",
  "grace@comcast.net",
  "heidi@example.org",
  "ivan@example.com",
  "judy@mail.sub.example.net",
  "mallory@[10.1.2.3]",
  "niaj@[IPv6:2001:db8::1]",
  "olivia@localhost",
  "peggy@xn--bcher-kva.example",
];

/** A ready queue through one of the harness environment's two proxies (the pool's first entry in service). */
const readyQueue = (site: string) =>
  new RegExp(`^proxy-[01]->${site.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}@smtp_client$`);

const domainOf = (recipient: string) => recipient.slice(recipient.lastIndexOf("@") + 1);

function messageSteps(recipients: string[]): string[] {
  return recipients.flatMap((r) => ["message", r, ""]);
}

function okStep(output: HarnessOutput, index: number): StepResult {
  const s = step(output, index);
  expect(s.ok, `step ${s.step} ${s.args.join(" ")}: ${JSON.stringify(s.error)}`).toBe(true);
  return s;
}

/** Seconds in a KumoMTA duration string such as "20s", "1m", "2h". */
function seconds(duration: string): number {
  const match = /^(\d+)\s*(s|m|h)$/.exec(duration);
  if (!match) throw new Error(`unexpected duration ${duration}`);
  return Number(match[1]) * { s: 1, m: 60, h: 3600 }[match[2] as "s" | "m" | "h"];
}

/** Messages per second in a KumoMTA rate such as "100/s" or "6000/min". */
function perSecond(rate: string): number {
  const match = /^(\d+)\/(s|sec|min|h)$/.exec(rate);
  if (!match) throw new Error(`unexpected rate ${rate}`);
  return Number(match[1]) / { s: 1, sec: 1, min: 60, h: 3600 }[match[2] as "s" | "sec" | "min" | "h"];
}

/** The MX host mx-dns (k8s/base/mx-dns/Corefile) gives each domain, which kumod takes as the site name. */
const MX_HOST: Record<string, string> = {
  "gmail.com": "gmail-smtp-in.l.google.com",
  "googlemail.com": "gmail-smtp-in.l.google.com",
  "yahoo.com": "mta5.am0.yahoodns.net",
  "outlook.com": "outlook-com.olc.protection.outlook.com",
  "hotmail.com": "hotmail-com.olc.protection.outlook.com",
};
const isLiteral = (domain: string) => domain.startsWith("[");
/** SINK_SITE_PORTS of the harness environment, by the last labels of the provider's MX hosts. */
const SITE_PORT: Record<string, number> = { google: 2526, yahoodns: 2527, outlook: 2528 };

describe("kumod policy routes every message by MX, through mx-dns, to the sink", () => {
  let authDir: string;
  let out: HarnessOutput;

  beforeAll(async () => {
    authDir = await credentialsDir(USER, PASSWORD);
    out = await runPolicy("init.lua", kumodEnv(authDir), ["init", ...messageSteps(RECIPIENTS)]);
  });
  afterAll(() => rm(authDir, { recursive: true, force: true }));

  it("loads, and points KumoMTA's resolver at mx-dns first thing in init", () => {
    expect(out.error).toBeUndefined();
    expect(out.exitCode).toBe(0);
    okStep(out, 0);
    expect(callsOf(out, "kumo.dns.lookup_addr")[0]?.args.name).toBe("mx-dns.kumomta.svc.cluster.local");
    expect(onlyCall(out, "kumo.dns.configure_resolver").args.name_servers).toEqual(["10.96.0.53:53"]);
    const initCalls = out.calls.map((c) => c.fn).filter((fn) => fn.startsWith("kumo."));
    expect(initCalls.indexOf("kumo.dns.configure_resolver")).toBeLessThan(initCalls.indexOf("kumo.define_spool"));
  });

  RECIPIENTS.forEach((recipient, i) => {
    const domain = domainOf(recipient);
    if (isLiteral(domain)) {
      it(`${domain}: an IP literal goes to the sink Service, not to the address`, () => {
        const r = okStep(out, i + 1).result;
        expect(r.answered_by).toBe("policy");
        expect(r.queue_config.protocol).toEqual({ smtp: { mx_list: [SINK_MX] } });
        expect(r.ready_queue).toMatch(readyQueue(`mx_list:${SINK_MX}`));
      });
    } else {
      const host = MX_HOST[domain] ?? `mx1.${domain}`;
      it(`${domain}: routed by its MX (${host}), a site of its own, queue domain kept`, () => {
        const r = okStep(out, i + 1).result;
        expect(r.answered_by).toBe("policy-extras.queue");
        expect(r.queue_config.protocol).toBeUndefined();
        expect(r.meta.routing_domain).toBeUndefined();
        expect(r.queue_name).toBe(`tilt@${domain}`);
        expect(r.site_name).toBe(host);
        expect(r.ready_queue).toMatch(readyQueue(host));
      });
    }

    const port = SITE_PORT[MX_HOST[domain]?.replace(/^.*\.(google|yahoodns|outlook)\.[a-z]+$/, "$1") ?? ""] ?? 2525;
    it(`${domain}: egress path to the sink's port for its site (${port}, a number) with TLS Disabled`, () => {
      const path = okStep(out, i + 1).result.egress_path;
      expect(path.smtp_port).toBe(port);
      expect(path.enable_tls).toBe("Disabled");
      expect(path.enable_mta_sts).toBe(false);
      expect(path.enable_dane).toBe(false);
    });
  });

  it("gives each provider its own ready queue", () => {
    const queues = ["gmail.com", "yahoo.com", "outlook.com", "example.com"].map(
      (d) => okStep(out, RECIPIENTS.findIndex((r) => domainOf(r) === d) + 1).result.ready_queue,
    );
    expect(new Set(queues).size).toBe(queues.length);
  });

  it("stops at start, naming mx-dns, when the pod's DNS cannot resolve it", async () => {
    const failed = await runPolicy("init.lua", kumodEnv(authDir), ["init"], { HARNESS_DNS: "none" });
    expect(step(failed, 0).ok).toBe(false);
    expect(JSON.stringify(step(failed, 0).error)).toMatch(
      /cannot resolve mx-dns\.kumomta\.svc\.cluster\.local.*mx-dns Service/,
    );
  });

  it("overrides TLS even where the shaping lookup demanded Required (gmail.com -> Google provider)", () => {
    const gmail = okStep(out, 1).result;
    expect(gmail.egress_path.provider_name).toBe("google");
    expect(gmail.queue_config.provider_name).toBe("google");
    expect(gmail.egress_path.enable_tls).toBe("Disabled");
    const orange = okStep(out, RECIPIENTS.indexOf("frank@orange.fr") + 1).result;
    expect(orange.egress_path.provider_name).toBe("orange");
    expect(orange.egress_path.enable_tls).toBe("Disabled");
  });

  it("retries sink deferrals within a minute and never leaves a message for days", () => {
    const config = okStep(out, 1).result.queue_config;
    expect(seconds(config.retry_interval)).toBeLessThanOrEqual(60);
    expect(seconds(config.max_retry_interval)).toBeLessThanOrEqual(60);
    expect(seconds(config.max_age)).toBeLessThan(24 * 3600);
    expect(config.egress_pool).toBe("egress");
  });

  it("lifts KumoMTA's shipped 100 msg/s and 10 connection default for the sink", () => {
    const path = okStep(out, RECIPIENTS.indexOf("heidi@example.org") + 1).result.egress_path;
    expect(path.connection_limit).toBeGreaterThan(10);
    expect(perSecond(path.max_message_rate)).toBeGreaterThan(100);
    expect(perSecond(path.max_connection_rate)).toBeGreaterThan(100 / 60);
  });
});

describe("kumod policy wiring", () => {
  let authDir: string;
  let out: HarnessOutput;
  const tsaHook = "http://tsa-1.tsa-headless.kumomta.svc.cluster.local:8008.tsa.kumomta";

  beforeAll(async () => {
    authDir = await credentialsDir(USER, PASSWORD);
    out = await runPolicy("init.lua", kumodEnv(authDir), [
      "init",
      "queue",
      "tenantless.example",
      "queue",
      tsaHook,
      "message",
      "a@example.org",
      "spring-sale",
      "rebound",
      "example.org",
      "[203.0.113.7]",
    ]);
  });
  afterAll(() => rm(authDir, { recursive: true, force: true }));

  it("defines RocksDB data and meta spools on the spool volume", () => {
    const spools = callsOf(out, "kumo.define_spool").map((c) => c.args);
    expect(spools).toEqual([
      { name: "data", path: "/var/spool/kumomta/data", kind: "RocksDB" },
      { name: "meta", path: "/var/spool/kumomta/meta", kind: "RocksDB" },
    ]);
  });

  it("writes local logs to the log volume and classifies bounces with the shipped IANA rules", () => {
    expect(onlyCall(out, "kumo.configure_local_logs").args).toEqual({ log_dir: "/var/log/kumomta" });
    expect(onlyCall(out, "kumo.configure_bounce_classifier").args).toEqual({
      files: ["/opt/kumomta/share/bounce_classifier/iana.toml"],
    });
  });

  it("listens on 0.0.0.0:8000 trusting loopback plus KUMO_TRUSTED_HOSTS", () => {
    expect(onlyCall(out, "kumo.start_http_listener").args).toEqual({
      listen: "0.0.0.0:8000",
      trusted_hosts: ["127.0.0.1", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"],
    });
  });

  it("trusts only loopback when KUMO_TRUSTED_HOSTS is empty", async () => {
    const alone = await runPolicy("init.lua", kumodEnv(authDir, { KUMO_TRUSTED_HOSTS: "" }), ["init"]);
    expect(onlyCall(alone, "kumo.start_http_listener").args.trusted_hosts).toEqual(["127.0.0.1", "::1"]);
  });

  it("sets up the shaping helper first, then our IP-literal routing, then the queue helper", () => {
    const queueHooks = out.registrations.filter((r) => r.event === "get_queue_config").map((r) => r.by);
    expect(queueHooks).toEqual(["policy-extras.shaping", "policy", "policy-extras.queue"]);
    const setups = out.calls
      .map((c) => c.fn)
      .filter((fn) => fn.endsWith("setup_with_automation") || fn.startsWith("queue:"));
    expect(setups).toEqual(["shaping:setup_with_automation", "queue:setup_with_options"]);
  });

  it("routes a queue that has no tenant (e.g. created by an admin rebind) by MX too", () => {
    const r = okStep(out, 1).result;
    expect(r.queue_name).toBe("tenantless.example");
    expect(r.ready_queue).toMatch(/^proxy-[01]->mx1\.tenantless\.example@smtp_client$/);
  });

  it("leaves TSA publish queues to the shaping helper (they must reach tsa-daemon, not the sink)", () => {
    const r = okStep(out, 2).result;
    expect(r.answered_by).toBe("policy-extras.shaping");
    expect(r.queue_config.protocol).toEqual({ custom_lua: { constructor: `make.${tsaHook}` } });
  });

  it("keeps a queue rebound to an outside routing_domain inside the cluster", () => {
    const r = okStep(out, 4).result;
    expect(r.queue_name).toBe("tilt@example.org![203.0.113.7]");
    expect(r.queue_config.protocol.smtp.mx_list).toEqual([SINK_MX]);
    expect(r.site_name).toBe(`mx_list:${SINK_MX}`);
  });

  it("keeps the campaign from X-Campaign in the queue name and strips the header", () => {
    const r = okStep(out, 3).result;
    expect(r.queue_name).toBe("spring-sale:tilt@example.org");
    expect(r.headers).toEqual({});
    expect(r.site_name).toBe("mx1.example.org");
  });

  it("uses Dragonfly by FQDN for shared throttles, with the password in its own field and never in the node URL", async () => {
    const password = "p@ss:w/rd%?#&=+ é";
    const custom = await runPolicy("init.lua", kumodEnv(authDir, { DRAGONFLY_PASSWORD: password }), ["init"]);
    const args = onlyCall(custom, "kumo.configure_redis_throttles").args;
    // kumod labels its redis_* metrics with `node`, so it must carry no credential.
    expect(args.node).toBe("redis://dragonfly.kumomta.svc.cluster.local:6379");
    expect(args.password).toBe(password);
    expect(Number.isInteger(args.pool_size)).toBe(true);
    // Bounded, so an unreachable Dragonfly ends kumod at start-up instead of a silent hang.
    expect(args.connect_timeout).toMatch(/^\d+s$/);
  });

  it("publishes to the TSA pods after init and subscribes through the ClusterIP Service", () => {
    const hooks = callsOf(out, "kumo.configure_log_hook").map((c) => c.args.name);
    expect(hooks.sort()).toEqual([
      "http://tsa-0.tsa-headless.kumomta.svc.cluster.local:8008.tsa.kumomta",
      "http://tsa-1.tsa-headless.kumomta.svc.cluster.local:8008.tsa.kumomta",
    ]);
    expect(onlyCall(out, "kumo.spawn_task").args).toEqual({
      event_name: "kumo.tsa.suspension.subscriber",
      args: ["http://tsa.kumomta.svc.cluster.local:8008"],
    });
  });

  it("loads KumoMTA's default and community shaping files, ours, then the TSA overlay", () => {
    const setup = onlyCall(out, "shaping:setup_with_automation").args;
    expect(setup.extra_files).toEqual([
      "/opt/kumomta/share/community/shaping.toml",
      "/opt/kumomta/etc/policy/shaping.toml",
    ]);
    const loads = callsOf(out, "kumo.shaping.load");
    expect(loads.length).toBeGreaterThan(0);
    expect(loads[0]?.args.files).toEqual([
      "/opt/kumomta/share/policy-extras/shaping.toml",
      "/opt/kumomta/share/community/shaping.toml",
      "/opt/kumomta/etc/policy/shaping.toml",
      "http://tsa.kumomta.svc.cluster.local:8008/get_config_v1/shaping.toml",
    ]);
  });
});

describe("kumod policy follows its environment", () => {
  let authDir: string;
  beforeAll(async () => {
    authDir = await credentialsDir(USER, PASSWORD);
  });
  afterAll(() => rm(authDir, { recursive: true, force: true }));

  for (const replicas of [1, 2, 3, 4, 5]) {
    it(`publishes to exactly ${replicas} TSA pod URL(s) for TSA_REPLICAS=${replicas}`, async () => {
      const out = await runPolicy(
        "init.lua",
        kumodEnv(authDir, { TSA_REPLICAS: String(replicas), POD_NAMESPACE: "mail-lab", TSA_STS: "tsa-daemon" }),
        [],
      );
      expect(out.error).toBeUndefined();
      const setup = onlyCall(out, "shaping:setup_with_automation").args;
      expect(setup.publish).toEqual(
        Array.from(
          { length: replicas },
          (_, i) => `http://tsa-daemon-${i}.tsa-headless.mail-lab.svc.cluster.local:8008`,
        ),
      );
      expect(setup.subscribe).toEqual(["http://tsa.mail-lab.svc.cluster.local:8008"]);
    });
  }

  it("builds every FQDN from POD_NAMESPACE and CLUSTER_DOMAIN, and every port from its variable", async () => {
    const out = await runPolicy(
      "init.lua",
      kumodEnv(authDir, {
        POD_NAMESPACE: "team-a",
        CLUSTER_DOMAIN: "corp.internal",
        SINK_SERVICE: "blackhole",
        SINK_SMTP_PORT: "2626",
        SINK_TLS: "OpportunisticInsecure",
        DRAGONFLY_SERVICE: "redis",
        DRAGONFLY_PORT: "6380",
        TSA_PORT: "9008",
        TSA_SERVICE: "tsa-api",
      }),
      ["init", "message", "x@gmail.com", "", "message", "x@[192.0.2.1]", ""],
    );
    const lookups = callsOf(out, "kumo.dns.lookup_addr").map((c) => c.args.name);
    expect(lookups[0]).toBe("mx-dns.team-a.svc.corp.internal");
    // The message's egress source: the pool's first proxy, through its Service.
    expect(lookups[1]).toMatch(/^proxy-[01]\.team-a\.svc\.corp\.internal$/);
    const literal = okStep(out, 2).result;
    expect(literal.queue_config.protocol.smtp.mx_list).toEqual(["blackhole.team-a.svc.corp.internal:2626"]);
    expect(literal.egress_path.smtp_port).toBe(2626);
    const r = okStep(out, 1).result;
    expect(r.egress_path.enable_tls).toBe("OpportunisticInsecure");
    expect(new URL(onlyCall(out, "kumo.configure_redis_throttles").args.node).host).toBe(
      "redis.team-a.svc.corp.internal:6380",
    );
    const setup = onlyCall(out, "shaping:setup_with_automation").args;
    expect(setup.publish[0]).toBe("http://tsa-0.tsa-headless.team-a.svc.corp.internal:9008");
    expect(setup.subscribe).toEqual(["http://tsa-api.team-a.svc.corp.internal:9008"]);
  });

  const badEnv: Array<[string, Record<string, string | undefined>, RegExp]> = [
    ["non-numeric TSA_REPLICAS", { TSA_REPLICAS: "two" }, /TSA_REPLICAS="two" is invalid: expected a whole number/],
    ["zero TSA_REPLICAS", { TSA_REPLICAS: "0" }, /TSA_REPLICAS="0" is invalid/],
    ["fractional TSA_REPLICAS", { TSA_REPLICAS: "2.0" }, /TSA_REPLICAS="2.0" is invalid/],
    ["missing TSA_REPLICAS", { TSA_REPLICAS: undefined }, /TSA_REPLICAS is not set/],
    ["out-of-range SINK_SMTP_PORT", { SINK_SMTP_PORT: "99999" }, /SINK_SMTP_PORT="99999" is invalid/],
    ["hex TSA_PORT", { TSA_PORT: "0x1f48" }, /TSA_PORT="0x1f48" is invalid/],
    ["SINK_SITE_PORTS without ports", { SINK_SITE_PORTS: "google,yahoo" }, /SINK_SITE_PORTS=.*site=port entries/],
    ["a site twice in SINK_SITE_PORTS", { SINK_SITE_PORTS: "google=1,google=2" }, /site google is listed twice/],
    ["a bad SINK_SITE_PORTS port", { SINK_SITE_PORTS: "google=70000" }, /SINK_SITE_PORTS="70000" is invalid/],
    [
      "0.0.0.0/0 in KUMO_TRUSTED_HOSTS",
      { KUMO_TRUSTED_HOSTS: "10.0.0.0/8,0.0.0.0/0" },
      /0\.0\.0\.0\/0.*whole internet/,
    ],
    ["::/0 in KUMO_TRUSTED_HOSTS", { KUMO_TRUSTED_HOSTS: "::/0" }, /"::\/0" is invalid: a \/0 network/],
    ["bare 0.0.0.0 in KUMO_TRUSTED_HOSTS", { KUMO_TRUSTED_HOSTS: "0.0.0.0" }, /unspecified address is one host/],
    ["non-strict CIDR", { KUMO_TRUSTED_HOSTS: "10.1.2.3/8" }, /"10\.1\.2\.3\/8" is invalid: host bits/],
    ["non-strict IPv6 CIDR", { KUMO_TRUSTED_HOSTS: "fd00::1/8" }, /"fd00::1\/8" is invalid: host bits/],
    ["garbage trusted host", { KUMO_TRUSTED_HOSTS: "pods" }, /KUMO_TRUSTED_HOSTS="pods" is invalid/],
    ["TLS the sink cannot do", { SINK_TLS: "Required" }, /SINK_TLS="Required" is invalid/],
    ["missing POD_NAMESPACE", { POD_NAMESPACE: undefined }, /POD_NAMESPACE is not set/],
    ["namespace that is not a DNS label", { POD_NAMESPACE: "Mail_Lab" }, /POD_NAMESPACE="Mail_Lab" is invalid/],
    ["missing DRAGONFLY_PASSWORD", { DRAGONFLY_PASSWORD: undefined }, /DRAGONFLY_PASSWORD is not set.*dragonfly-auth/],
  ];
  for (const [label, overrides, message] of badEnv) {
    it(`refuses to start with ${label}`, async () => {
      const out = await runPolicy("init.lua", kumodEnv(authDir, overrides), ["init"]);
      expect(out.ok).toBe(false);
      expect(out.exitCode).toBe(1);
      expect(out.error).toMatch(/^kumomta-tilt policy: /);
      expect(out.error).toMatch(message);
    });
  }

  it("accepts valid IPv6 and single-host entries in KUMO_TRUSTED_HOSTS", async () => {
    const hosts = "10.244.0.0/16, fd00:10:244::/56,192.168.65.3,2001:db8::/32";
    const out = await runPolicy("init.lua", kumodEnv(authDir, { KUMO_TRUSTED_HOSTS: hosts }), ["init"]);
    expect(onlyCall(out, "kumo.start_http_listener").args.trusted_hosts).toEqual([
      "127.0.0.1",
      "::1",
      "10.244.0.0/16",
      "fd00:10:244::/56",
      "192.168.65.3",
      "2001:db8::/32",
    ]);
  });
});

describe("kumod policy HTTP basic auth against the mounted Secret files", () => {
  let authDir: string;
  beforeAll(async () => {
    authDir = await credentialsDir(USER, `${PASSWORD}\n`);
  });
  afterAll(() => rm(authDir, { recursive: true, force: true }));

  it("accepts the seeded credentials and rejects everything else", async () => {
    const attempts: Array<[string, string, boolean]> = [
      [USER, PASSWORD, true],
      [USER, `${PASSWORD}x`, false],
      [USER, PASSWORD.slice(0, -1), false],
      [USER, PASSWORD.toUpperCase(), false],
      [`${USER} `, PASSWORD, false],
      ["admin", PASSWORD, false],
      [USER, "", false],
      ["", "", false],
      ["", PASSWORD, false],
    ];
    const out = await runPolicy(
      "init.lua",
      kumodEnv(authDir),
      attempts.flatMap(([u, p]) => ["auth", u, p]),
    );
    attempts.forEach(([u, p, expected], i) => {
      expect(okStep(out, i).result.accepted, `user=${JSON.stringify(u)} password=${JSON.stringify(p)}`).toBe(expected);
    });
  });

  it("honours a rotated password without reloading the policy", async () => {
    const out = await runPolicy("init.lua", kumodEnv(authDir), [
      "auth",
      USER,
      PASSWORD,
      "write",
      path.join(authDir, "password"),
      "rotated-password",
      "auth",
      USER,
      PASSWORD,
      "auth",
      USER,
      "rotated-password",
      "write",
      path.join(authDir, "password"),
      PASSWORD,
    ]);
    expect(okStep(out, 0).result.accepted).toBe(true);
    expect(okStep(out, 2).result.accepted).toBe(false);
    expect(okStep(out, 3).result.accepted).toBe(true);
  });

  it("fails init clearly when the Secret is not mounted, and never accepts without it", async () => {
    const missing = path.join(authDir, "does-not-exist");
    const out = await runPolicy("init.lua", kumodEnv(missing), ["init", "auth", USER, PASSWORD]);
    const init = step(out, 0);
    expect(init.ok).toBe(false);
    expect(String(init.error)).toMatch(/cannot read HTTP credential file .*does-not-exist\/username.*kumo-http-auth/);
    const auth = step(out, 1);
    expect(auth.ok).toBe(false);
    expect(auth.result).toBeUndefined();
  });

  it("fails clearly on an empty credential file without revealing the other secret", async () => {
    const secretUser = "user-only-the-secret-knows";
    const emptyDir = await credentialsDir(secretUser, "");
    try {
      const out = await runPolicy("init.lua", kumodEnv(emptyDir), ["init", "auth", "someone", "guess"]);
      expect(step(out, 0).ok).toBe(false);
      expect(String(step(out, 0).error)).toMatch(/password is empty; run `npm run seed`/);
      expect(step(out, 1).ok).toBe(false);
      expect(JSON.stringify(out)).not.toContain(secretUser);
    } finally {
      await rm(emptyDir, { recursive: true, force: true });
    }
  });
});

describe("kumod policy egress: the pool's sources in service and their proxies", () => {
  let authDir: string;
  beforeAll(async () => {
    authDir = await credentialsDir(USER, PASSWORD);
  });
  afterAll(() => rm(authDir, { recursive: true, force: true }));

  const run = (env: Record<string, string | undefined>, steps: string[]) =>
    runPolicy("init.lua", kumodEnv(authDir, env), ["init", ...steps]);
  const poolMembers = (out: HarnessOutput) =>
    (okStep(out, 1).result.entries as { name: string; weight: number }[]).map((e) => `${e.name}:${e.weight}`).sort();

  it("with the proxy component, uses exactly the proxy pods that exist, weighted as in sources.toml", async () => {
    expect(poolMembers(await run({ PROXY_REPLICAS: "2" }, ["pool", "egress"]))).toEqual(["proxy-0:1", "proxy-1:1"]);
    expect(poolMembers(await run({ PROXY_REPLICAS: "4" }, ["pool", "egress"]))).toEqual([
      "proxy-0:1",
      "proxy-1:1",
      "proxy-2:1",
      "proxy-3:1",
    ]);
  });

  it("without it, delivers from kumod's own pod IP (source direct)", async () => {
    const out = await run({ PROXY_STS: undefined, PROXY_REPLICAS: undefined, PROXY_PORT: undefined }, [
      "pool",
      "egress",
      "source",
      "direct",
    ]);
    expect(poolMembers(out)).toEqual(["direct:1"]);
    expect(okStep(out, 2).result).toEqual({ name: "direct" });
  });

  it("sends each proxy source through its pod's own Service, connecting from the pod's address", async () => {
    const out = await run({}, ["source", "proxy-1"]);
    const source = okStep(out, 1).result;
    const lookups = callsOf(out, "kumo.dns.lookup_addr").map((c) => c.args.name);
    expect(lookups).toContain("proxy-1.kumomta.svc.cluster.local");
    expect(source.name).toBe("proxy-1");
    expect(source.socks5_proxy_server).toMatch(/^10\.96\.\d+\.\d+:5000$/);
    expect(source.socks5_proxy_source_address).toBe("0.0.0.0");
    const other = okStep(await run({}, ["source", "proxy-0"]), 1).result;
    expect(other.socks5_proxy_server).not.toBe(source.socks5_proxy_server);
  });

  it("says which Service is missing when a proxy's name does not resolve", async () => {
    const out = await runPolicy("init.lua", { ...kumodEnv(authDir), HARNESS_DNS: "none" }, ["source", "proxy-0"]);
    expect(step(out, 0).ok).toBe(false);
    expect(String(step(out, 0).error)).toMatch(
      /cannot resolve proxy-0\.kumomta\.svc\.cluster\.local for egress source proxy-0/,
    );
  });

  it("refuses a proxy count the pool has no sources for, or a missing port, naming the variable", async () => {
    for (const [env, message] of [
      [{ PROXY_REPLICAS: "5" }, /PROXY_REPLICAS="5" is invalid: expected a whole number between 1 and 4/],
      [{ PROXY_REPLICAS: "0" }, /PROXY_REPLICAS="0" is invalid/],
      [{ PROXY_PORT: undefined }, /PROXY_PORT is not set; k8s\/components\/proxy sets it/],
    ] as const) {
      const out = await runPolicy("init.lua", kumodEnv(authDir, env), []);
      expect(out.exitCode).toBe(1);
      expect(out.error).toMatch(message);
    }
  });
});
