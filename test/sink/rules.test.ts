import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, parseConfig, type ScenarioDef, validateScenario } from "../../sink/src/rules/config.ts";
import { ScenarioControl } from "../../sink/src/rules/control.ts";
import {
  addressDirective,
  CompiledScenario,
  newDecision,
  type PeerState,
  STAGE_CONNECT,
  STAGE_DATA,
  STAGE_RCPT,
} from "../../sink/src/rules/engine.ts";
import { Random } from "../../sink/src/rules/random.ts";
import { SINK_DIR } from "./helpers.ts";

function errorsOf(text: string): string[] {
  try {
    parseConfig(text);
  } catch (err) {
    if (err instanceof ConfigError) return err.details;
    throw err;
  }
  return [];
}

function scenario(rules: unknown[], extra: Record<string, unknown> = {}, catalogues = {}): ScenarioDef {
  const errors: string[] = [];
  const def = validateScenario("t", { rules, ...extra }, catalogues, "t", errors);
  expect(errors).toEqual([]);
  return def as ScenarioDef;
}

function compile(def: ScenarioDef, seed = 1, catalogues = {}) {
  const fired: string[] = [];
  const compiled = new CompiledScenario(def, catalogues, new Random(seed), (r) => fired.push(r));
  return { compiled, fired };
}

const peer = (site = "other"): PeerState => ({
  ip: "192.0.2.7",
  site,
  boundTo: null,
  siteRules: null,
  throttleCounts: null,
});

describe("rules file validation", () => {
  it("accepts the shipped config with its named scenarios", () => {
    const config = parseConfig(readFileSync(join(SINK_DIR, "config", "sink.yaml"), "utf8"));
    expect(Object.keys(config.scenarios)).toEqual(
      expect.arrayContaining(["accept-all", "realistic", "gmail-throttling", "directives"]),
    );
    // Like KumoMTA's smart sink, the default honours address directives; accept-all takes everything.
    expect(config.defaultScenario).toBe("directives");
    expect(config.scenarios.directives).toMatchObject({ directives: "rcpt", rules: [] });
    expect(config.scenarios["accept-all"]).toMatchObject({ directives: "off", rules: [] });
  });

  it("reports every problem with its path", () => {
    const details = errorsOf(`
default_scenario: nope
scenarios:
  bad:
    directives: maybe
    rules:
      - name: Bad Name
        stage: helo
        probability: 2
        throttle: {max: -1, per: hour}
        delay: {median_ms: 10}
        reply: "hello"
      - name: x
        stage: mail
        domains: [gmail.com]
        reply: "451 4.7.1 a"
        action: disconnect
      - name: y
        catalogue: missing
      - name: z
      - name: s1
        sites: google
        delay: 1
      - name: s2
        sites: [google, Yahoo]
        delay: 1
`);
    const expected = [
      "default_scenario: must name one of the scenarios",
      "scenarios.bad.directives: must be off, rcpt or data",
      "scenarios.bad.rules[0].name",
      "scenarios.bad.rules[0].stage: must be one of connect, mail, rcpt, data",
      "scenarios.bad.rules[0].probability",
      "scenarios.bad.rules[0].throttle",
      "scenarios.bad.rules[0].delay",
      "scenarios.bad.rules[0].reply",
      "scenarios.bad.rules[1].domains: recipient domains are unknown at stage mail",
      "scenarios.bad.rules[1]: reply, catalogue and action are mutually exclusive",
      'scenarios.bad.rules[2].catalogue: unknown catalogue "missing"',
      "scenarios.bad.rules[3]: needs an effect",
      "scenarios.bad.rules[4].sites: must be a non-empty list of site names",
      "scenarios.bad.rules[5].sites[1]: not a site name",
    ];
    for (const e of expected)
      expect(
        details.some((d) => d.startsWith(e)),
        e,
      ).toBe(true);
  });

  it("rejects YAML syntax errors, unknown keys and duplicate rule names", () => {
    expect(errorsOf("scenarios: [")[0]).toMatch(/./);
    expect(errorsOf("scenarios: {a: {rulez: []}}")).toContain("scenarios.a.rulez: unknown key");
    expect(errorsOf("scenarios: {a: {rules: [{name: r, delay: 1}, {name: r, delay: 2}]}}")).toContain(
      "scenarios.a.rules[1].name: duplicate rule name r",
    );
    expect(errorsOf("scenarios: {a: {rules: [{name: r, stage: connect, reply: '250 ok'}]}}")[0]).toMatch(
      /connect-stage reply must be 4xx or 5xx/,
    );
  });

  it("writes provider replies that KumoMTA's shaping automation regexes match", () => {
    const config = parseConfig(readFileSync(join(SINK_DIR, "config", "sink.yaml"), "utf8"));
    const render = (t: string) => t.replace(/\{ip\}/g, "10.1.2.3");
    const all = Object.values(config.catalogues).flat().map(render);
    // Patterns from KumoMTA's policy-extras and community shaping.toml automation rules.
    const tsa = [
      /Our system has detected an unusual rate/,
      /Our system has detected that this message/,
      /\[TS?S04\]/,
      /421 4\.7\.0 \[TSS05\]/,
      /Messages from \d+\.\d+\.\d+\.\d+ temporarily deferred/,
      /553 5\.7\.1 \[BL/,
      /Server busy\. Please try again later from/,
      /has been temporarily rate limited due to IP reputation/,
      /Unfortunately, messages from \d+\.\d+\.\d+\.\d+ weren.t sent/,
      /Unfortunately.*part of their network is on our block list/,
    ];
    for (const re of tsa)
      expect(
        all.some((r) => re.test(r)),
        String(re),
      ).toBe(true);
    const yahoo = config.scenarios.realistic?.rules.find((r) => r.name === "yahoo-per-connection");
    expect(yahoo?.reply?.[0]).toMatch(/Max message per connection reached, closing transmission channel/);
  });
});

describe("address directives (KumoMTA smart-sink conventions)", () => {
  it("maps local parts to replies", () => {
    expect(addressDirective("user-tempfail-1")).toMatch(/^451 4\./);
    expect(addressDirective("PermFail")).toMatch(/^550 5\./);
    expect(addressDirective("452-quota")).toMatch(/^452 4\.0\.0/);
    expect(addressDirective("554-x")).toMatch(/^554 5\.0\.0/);
    expect(addressDirective("250-permfail")).toBe("");
    expect(addressDirective("399-x")).toBeNull();
    expect(addressDirective("alice")).toBeNull();
  });
});

describe("rules engine", () => {
  it("matches exact, wildcard-suffix and any domains", () => {
    const { compiled } = compile(
      scenario([
        { name: "a", domains: ["gmail.com"], reply: "451 4.7.1 a" },
        { name: "b", domains: ["*.example.net"], reply: "452 4.7.1 b" },
        { name: "c", domains: ["*"], reply: "550 5.7.1 c" },
      ]),
    );
    const d = newDecision();
    const code = (domain: string) => {
      compiled.evaluate(STAGE_RCPT, peer(), [domain], 0, 1, d);
      return d.code;
    };
    expect(code("gmail.com")).toBe(451);
    expect(code("mx.example.net")).toBe(452);
    expect(code("example.net")).toBe(550);
    expect(code("other.org")).toBe(550);
  });

  it("applies a rule with sites only on connections to those sites, at any stage", () => {
    const { compiled } = compile(
      scenario([
        { name: "busy", stage: "connect", sites: ["outlook"], reply: "421 4.7.0 busy" },
        { name: "nope", sites: ["google", "other"], domains: ["gone.example"], reply: "550 5.1.1 nope" },
      ]),
    );
    const d = newDecision();
    const code = (site: string, stage: number, domains: string[]) => {
      compiled.evaluate(stage, peer(site), domains, 0, domains.length, d);
      return d.code;
    };
    expect(code("outlook", STAGE_CONNECT, [])).toBe(421);
    expect(code("google", STAGE_CONNECT, [])).toBe(0);
    expect(code("other", STAGE_CONNECT, [])).toBe(0);
    expect(code("google", STAGE_RCPT, ["gone.example"])).toBe(550);
    expect(code("other", STAGE_RCPT, ["gone.example"])).toBe(550);
    expect(code("yahoo", STAGE_RCPT, ["gone.example"])).toBe(0);
    expect(code("google", STAGE_RCPT, ["here.example"])).toBe(0);
    expect(compiled.hasRules(STAGE_CONNECT, peer("yahoo"))).toBe(false);
    expect(compiled.hasRules(STAGE_CONNECT, peer("outlook"))).toBe(true);
  });

  it("adds delays from delay-only rules and stops at the first decisive rule", () => {
    const { compiled, fired } = compile(
      scenario([
        { name: "slow", stage: "data", delay: 100 },
        { name: "slower", stage: "data", delay: { min_ms: 10, max_ms: 20 } },
        { name: "no", stage: "data", domains: ["other.org"], reply: "554 5.7.1 no" },
        { name: "defer", stage: "data", reply: "451 4.7.1 from {ip} for {domain}" },
        { name: "never", stage: "data", reply: "550 5.7.1 never" },
      ]),
    );
    const d = newDecision();
    compiled.evaluate(STAGE_DATA, peer(), ["a.example", "b.example"], 0, 2, d);
    expect(d.delayMs).toBeGreaterThanOrEqual(110);
    expect(d.delayMs).toBeLessThanOrEqual(120);
    expect(d.reply).toBe("451 4.7.1 from 192.0.2.7 for a.example");
    expect(fired).toEqual(["slow", "slower", "defer"]);
  });

  it("draws probabilities from the seed: same seed, same decisions; rates close to the probability", () => {
    const def = scenario([{ name: "p", probability: 0.3, reply: "451 4.7.1 p" }]);
    const run = (seed: number) => {
      const { compiled } = compile(def, seed);
      const d = newDecision();
      return Array.from({ length: 2000 }, () => {
        compiled.evaluate(STAGE_RCPT, peer(), ["x.example"], 0, 1, d);
        return d.code;
      });
    };
    const a = run(5);
    expect(run(5)).toEqual(a);
    expect(run(6)).not.toEqual(a);
    const rate = a.filter((c) => c === 451).length / a.length;
    expect(rate).toBeGreaterThan(0.25);
    expect(rate).toBeLessThan(0.35);
  });

  it("throttles per connection: the events over max fire", () => {
    const { compiled } = compile(
      scenario([{ name: "t", throttle: { max: 3, per: "connection" }, reply: "421 4.7.0 t" }]),
    );
    const d = newDecision();
    const p1 = peer();
    const p2 = peer();
    const codes = (p: PeerState, n: number) =>
      Array.from({ length: n }, () => {
        compiled.evaluate(STAGE_RCPT, p, ["x.example"], 0, 1, d);
        return d.code;
      });
    expect(codes(p1, 5)).toEqual([0, 0, 0, 421, 421]);
    expect(codes(p2, 4)).toEqual([0, 0, 0, 421]);
  });

  it("throttles per second across connections, counting only matching domains", () => {
    const { compiled } = compile(
      scenario([{ name: "t", domains: ["gmail.com"], throttle: { max: 5, per: "second" }, reply: "421 4.7.28 t" }]),
    );
    const d = newDecision();
    let refused = 0;
    for (let i = 0; i < 10; i++) {
      compiled.evaluate(STAGE_RCPT, peer(), ["other.org"], 0, 1, d);
      expect(d.code).toBe(0);
      compiled.evaluate(STAGE_RCPT, peer(), ["gmail.com"], 0, 1, d);
      if (d.code === 421) refused++;
    }
    // Ten events inside (at most) two one-second windows: at least 0 and at most 5 pass, the rest are refused.
    expect(refused).toBeGreaterThanOrEqual(5);
    expect(refused).toBeLessThan(10);
  });

  it("throttles per second counting only the events of the rule's sites", () => {
    const { compiled } = compile(
      scenario([{ name: "t", sites: ["google"], throttle: { max: 5, per: "second" }, reply: "421 4.7.28 t" }]),
    );
    const d = newDecision();
    let refused = 0;
    for (let i = 0; i < 10; i++) {
      compiled.evaluate(STAGE_RCPT, peer("other"), ["gmail.com"], 0, 1, d);
      expect(d.code).toBe(0);
      compiled.evaluate(STAGE_RCPT, peer("google"), ["example.org"], 0, 1, d);
      if (d.code === 421) refused++;
    }
    // Ten Google events inside (at most) two one-second windows; the ten others count for nothing.
    expect(refused).toBeGreaterThanOrEqual(5);
    expect(refused).toBeLessThan(10);
  });

  it("samples log-normal delays around the median with a long tail", () => {
    const { compiled } = compile(scenario([{ name: "l", stage: "connect", delay: { median_ms: 50, p99_ms: 500 } }]));
    const d = newDecision();
    const xs = Array.from({ length: 4000 }, () => {
      compiled.evaluate(STAGE_CONNECT, peer(), [], 0, 0, d);
      return d.delayMs;
    }).sort((a, b) => a - b);
    expect(xs[2000]).toBeGreaterThan(40);
    expect(xs[2000]).toBeLessThan(60);
    expect(xs[3960]).toBeGreaterThan(350);
    expect(xs[3960]).toBeLessThan(700);
  });
});

describe("scenario control", () => {
  const config = parseConfig(readFileSync(join(SINK_DIR, "config", "sink.yaml"), "utf8"));

  it("selects named scenarios, refuses unknown ones, and keeps a custom scenario across reloads", () => {
    const c = new ScenarioControl(config, undefined, 1, () => {});
    expect(c.active.def.name).toBe("directives");
    expect(c.select("realistic")).toBe(true);
    expect(c.select("nope")).toBe(false);
    expect(c.active.def.name).toBe("realistic");
    c.reload(config);
    expect(c.active.def.name).toBe("realistic");
    c.replace(scenario([{ name: "x", delay: 1 }]));
    c.reload(config);
    expect(c.active.def.name).toBe("t");
    expect(() => new ScenarioControl(config, "nope", 1, () => {})).toThrow(
      /unknown scenario "nope"; available: accept-all/,
    );
  });

  it("falls back to the default scenario when a reload removes the active one", () => {
    const c = new ScenarioControl(config, "gmail-throttling", 1, () => {});
    c.reload(parseConfig("default_scenario: only\nscenarios:\n  only: {}\n"));
    expect(c.active.def.name).toBe("only");
  });
});
