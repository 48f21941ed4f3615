import { describe, expect, it } from "vitest";
import { GeneratedBodyWriter, incrementDecimal, writeDecimal } from "../../scripts/lib/body-writer.ts";
import { wantsJson } from "../../scripts/lib/cli.ts";
import { allPassed, formatChecks, versionAtLeast } from "../../scripts/lib/doctor-checks.ts";
import { resolveToolEnv } from "../../scripts/lib/env.ts";
import { EXIT } from "../../scripts/lib/exit-codes.ts";
import { parseInjectArgs } from "../../scripts/lib/inject-args.ts";
import {
  backoffMs,
  classifyNetworkError,
  classifyStatus,
  errorGroupKey,
  fieldFromKumodMessage,
  suggestBatch,
} from "../../scripts/lib/inject-errors.ts";
import { bodyFrame, fileBody, requestTemplate, validatePayload } from "../../scripts/lib/inject-payload.ts";
import { parseJsonWithLocation } from "../../scripts/lib/json-location.ts";
import { classifyKubectlFailure, kubectlMessage, parsePods, parsePortForwardLine } from "../../scripts/lib/kubectl.ts";
import { localProduct } from "../../scripts/lib/local-context.ts";
import { dueOffsetMs, parseDurationMs } from "../../scripts/lib/pacing.ts";
import { DomainPicker, parseDomains, RecipientGenerator } from "../../scripts/lib/recipients.ts";
import { type SinkStats, sinkDelta } from "../../scripts/lib/sink-api.ts";
import { suspensionList } from "../../scripts/lib/tsa.ts";

describe("pacing schedule", () => {
  it("puts request k at k*batch/rate seconds from the start", () => {
    expect(dueOffsetMs(0, 1000)).toBe(0);
    expect(dueOffsetMs(100, 1000)).toBe(100);
    expect(dueOffsetMs(250, 500)).toBe(500);
    expect(dueOffsetMs(1, 3)).toBeCloseTo(333.333, 2);
  });
  it("parses durations", () => {
    expect(parseDurationMs("90")).toBe(90_000);
    expect(parseDurationMs("1500ms")).toBe(1500);
    expect(parseDurationMs("2m")).toBe(120_000);
    expect(parseDurationMs("1m30s")).toBe(90_000);
    expect(parseDurationMs("1h")).toBe(3_600_000);
    expect(parseDurationMs("soon")).toBeUndefined();
    expect(parseDurationMs("5x")).toBeUndefined();
    expect(parseDurationMs("")).toBeUndefined();
  });
});

describe("domain weights and recipients", () => {
  it("parses weights and rejects bad specs", () => {
    expect(parseDomains("a.example,b.example:3,c.example")).toEqual([
      { domain: "a.example", weight: 1 },
      { domain: "b.example", weight: 3 },
      { domain: "c.example", weight: 1 },
    ]);
    expect(() => parseDomains("")).toThrow(/at least one domain/);
    expect(() => parseDomains("a.example:0")).toThrow(/weight of a.example/);
    expect(() => parseDomains("a.example:1.5")).toThrow(/whole number/);
    expect(() => parseDomains("not a domain")).toThrow(/DOMAIN or DOMAIN:WEIGHT/);
    expect(() => parseDomains("a.example,A.example:2")).toThrow(/listed twice/);
  });
  it("gives every domain exactly its weight in each window, interleaved", () => {
    const picker = new DomainPicker(parseDomains("a:1,b:3,c:2"));
    const window = Array.from({ length: 6 }, () => picker.next());
    expect(window.filter((d) => d === "b")).toHaveLength(3);
    expect(window.filter((d) => d === "c")).toHaveLength(2);
    expect(window.filter((d) => d === "a")).toHaveLength(1);
    expect(window.join("")).not.toContain("bbb");
    const next = Array.from({ length: 6 }, () => picker.next());
    expect(next).toEqual(window);
  });
  it("generates distinct addresses lazily up to the limit", () => {
    const g = new RecipientGenerator(parseDomains("x.example,y.example"), "u", 5);
    expect(g.take(2)).toEqual(["u0@x.example", "u1@y.example"]);
    expect(g.take(10)).toEqual(["u2@x.example", "u3@y.example", "u4@x.example"]);
    expect(g.take(10)).toEqual([]);
    expect(g.generated).toBe(5);
  });
  it("works without a limit (--duration) and without holding past addresses", () => {
    const g = new RecipientGenerator(parseDomains("x.example"), "u", Number.POSITIVE_INFINITY);
    for (let i = 0; i < 1000; i++) g.take(100);
    expect(g.take(1)).toEqual(["u100000@x.example"]);
  });
});

describe("payload schema (kumod 2026.06.23)", () => {
  const ok = {
    envelope_sender: "s@example.org",
    content: { subject: "s", text_body: "t", from: { email: "s@example.org" } },
    recipients: [{ email: "r@example.com", name: "R", metadata: { k: "v" } }],
  };
  it("accepts the documented fields", () => {
    expect(validatePayload(ok, false)).toEqual([]);
    expect(validatePayload({ ...ok, content: "Subject: x\r\n\r\nbody" }, false)).toEqual([]);
    const full = {
      ...ok,
      template_dialect: "Static",
      deferred_spool: true,
      trace_headers: {
        received_header: false,
        supplemental_header: true,
        header_name: "X-Ref",
        include_meta_names: [],
      },
    };
    expect(validatePayload(full, false)).toEqual([]);
  });
  it("names unknown, missing and mistyped fields with their path", () => {
    const paths = (p: unknown, gen = false) => validatePayload(p, gen).map((i) => i.path);
    expect(paths({ ...ok, sender: "x" })).toEqual(["sender"]);
    expect(paths({ ...ok, content: { subjekt: "x" } })).toEqual(["content.subjekt"]);
    expect(paths({ ...ok, recipients: [{ mail: "x" }] })).toEqual(["recipients[0].mail", "recipients[0].email"]);
    expect(paths({ content: "x", recipients: [] })).toEqual(["envelope_sender", "recipients"]);
    expect(paths({ ...ok, deferred_spool: "yes" })).toEqual(["deferred_spool"]);
    expect(paths({ ...ok, template_dialect: "jinja" })).toEqual(["template_dialect"]);
    expect(paths({ ...ok, trace_headers: { header_name: "X" } })).toEqual([
      "trace_headers.received_header",
      "trace_headers.supplemental_header",
      "trace_headers.include_meta_names",
    ]);
    expect(paths({ ...ok, content: { attachments: [{ data: "x", inline: true }] } })).toEqual([
      "content.attachments[0].inline",
      "content.attachments[0].content_type",
    ]);
    expect(paths([1])).toEqual([""]);
  });
  it("does not require recipients when they are generated", () => {
    const { recipients: _r, ...noRecipients } = ok;
    expect(validatePayload(noRecipients, true)).toEqual([]);
    expect(validatePayload(noRecipients, false).map((i) => i.path)).toEqual(["recipients"]);
  });
  it("builds request bodies that are the payload plus the batch's recipients", () => {
    const tpl = requestTemplate(ok, { deferredSpool: true, deferredGeneration: false });
    const gen = new RecipientGenerator(parseDomains("x.example,y.example:2"), "load.", 3);
    const writer = new GeneratedBodyWriter(bodyFrame(tpl, ok.recipients[0]), gen);
    const first = writer.next(2);
    expect(first?.recipients).toBe(2);
    expect(JSON.parse(first?.body.toString("utf8") ?? "")).toEqual({
      ...ok,
      deferred_spool: true,
      recipients: [
        { email: "load.0@y.example", name: "R", metadata: { k: "v" } },
        { email: "load.1@x.example", name: "R", metadata: { k: "v" } },
      ],
    });
    expect(JSON.parse(writer.next(2)?.body.toString() ?? "").recipients).toEqual([
      { email: "load.2@y.example", name: "R", metadata: { k: "v" } },
    ]);
    expect(writer.next(2)).toBeUndefined();
  });
  it("writes decimals of any size", () => {
    const buf = Buffer.alloc(40);
    for (const v of [0, 7, 10, 99, 100, 123456789, 9_007_199_254_740_991]) {
      const end = writeDecimal(buf, 3, v);
      expect(buf.toString("latin1", 3, end)).toBe(String(v));
    }
  });
  it("increments ASCII decimals in place, carrying into a new digit", () => {
    for (const v of [0, 8, 9, 99, 1299, 999_999]) {
      const d = new Uint8Array(24);
      const len = incrementDecimal(d, writeDecimal(d, 0, v));
      expect(Buffer.from(d.subarray(0, len)).toString("latin1")).toBe(String(v + 1));
    }
  });
  it("encodes non-ASCII content and recipient fields as UTF-8", () => {
    const p = {
      ...ok,
      content: { subject: "Grüße ✉", text_body: "t" },
      recipients: [{ email: "r@x.example", name: "Jörg" }],
    };
    const frame = bodyFrame(requestTemplate(p, { deferredSpool: false, deferredGeneration: false }), p.recipients[0]);
    const writer = new GeneratedBodyWriter(frame, new RecipientGenerator(parseDomains("x.example"), "u", 1));
    const gen = JSON.parse(writer.next(10)?.body.toString("utf8") ?? "");
    expect(gen.content.subject).toBe("Grüße ✉");
    expect(gen.recipients).toEqual([{ email: "u0@x.example", name: "Jörg" }]);
    const file = JSON.parse(fileBody(frame, [{ email: 'q"uote@x.example', name: "Zoë" }]).toString("utf8"));
    expect(file.recipients).toEqual([{ email: 'q"uote@x.example', name: "Zoë" }]);
  });
});

describe("JSON error location", () => {
  it.each([
    ['{"a": 1,}', 1, 9, "trailing comma"],
    ['{\n  "a": 1\n  "b": 2\n}', 3, 3, "expected ',' or '}'"],
    ['{"a": tru}', 1, 7, "expected a value"],
    ['{"a": "x\ny"}', 1, 9, "control character"],
    ['{"a": 1', 1, 8, "unexpected end of file"],
    ["[1, 2] 3", 1, 8, "after the end"],
  ])("%j → line %i column %i", (text, line, column, message) => {
    const r = parseJsonWithLocation(text);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error).toMatchObject({ line, column });
      expect(r.error.message).toContain(message);
    }
  });
  it("parses valid JSON, with a BOM too", () => {
    expect(parseJsonWithLocation('\ufeff{"a":[1,{"b":null}]}')).toEqual({ ok: true, value: { a: [1, { b: null }] } });
  });
});

describe("error classification", () => {
  it("maps kumod's statuses to retry, stop or count", () => {
    expect(classifyStatus(200)).toEqual({ kind: "ok" });
    expect(classifyStatus(503).kind).toBe("retry");
    expect(classifyStatus(401)).toMatchObject({ kind: "fatal", exitCode: EXIT.unauthorized });
    expect(classifyStatus(422)).toMatchObject({ kind: "fatal", exitCode: EXIT.unprocessable });
    expect(classifyStatus(413)).toMatchObject({ kind: "fatal", exitCode: EXIT.tooLarge });
    expect(classifyStatus(400)).toMatchObject({ kind: "fatal", exitCode: EXIT.httpError });
    // Not kumod's inject API at all: every later request would get the same.
    expect(classifyStatus(404)).toMatchObject({ kind: "fatal", exitCode: EXIT.httpError });
    expect(classifyStatus(405)).toMatchObject({ kind: "fatal", exitCode: EXIT.httpError });
    expect(classifyStatus(500)).toMatchObject({ kind: "failed", exitCode: EXIT.httpError });
  });
  it("fails fast on a refused connection before kumod ever answered, retries after", () => {
    expect(classifyNetworkError("ECONNREFUSED", false)).toMatchObject({
      kind: "fatal",
      exitCode: EXIT.kumodUnreachable,
    });
    expect(classifyNetworkError("ECONNRESET", true).kind).toBe("retry");
  });
  it("backs off exponentially with jitter, capped", () => {
    expect(backoffMs(0, 0)).toBe(100);
    expect(backoffMs(0, 1)).toBe(200);
    expect(backoffMs(3, 1)).toBe(1600);
    expect(backoffMs(20, 1)).toBe(5000);
  });
  it("groups per-recipient errors by their text", () => {
    expect(errorGroupKey("a@example.com: 550 5.7.1 no")).toBe("550 5.7.1 no");
    expect(errorGroupKey("something else: x")).toBe("something else: x");
  });
  it("finds the field in serde's messages", () => {
    expect(fieldFromKumodMessage("unknown field `foo`, expected one of `a`")).toBe("foo");
    expect(fieldFromKumodMessage("missing field `content` at line 1")).toBe("content");
    expect(fieldFromKumodMessage("template error")).toBeUndefined();
  });
  it("suggests a batch under 2 MiB", () => {
    expect(suggestBatch(50_000, 4 * 1024 * 1024)).toBe(22_500);
    expect(suggestBatch(100, 4000)).toBe(50);
  });
});

describe("--json on the command line", () => {
  it("is an option only before a -- terminator", () => {
    expect(wantsJson(["--count", "1", "--json"])).toBe(true);
    expect(wantsJson(["--count", "1"])).toBe(false);
    expect(wantsJson(["--payload", "x.json", "--", "--json"])).toBe(false);
  });
});

describe("inject options", () => {
  it("has usable defaults", () => {
    const o = parseInjectArgs([]);
    expect(o).toMatchObject({ batch: 100, concurrency: 8, count: undefined, retries: 4, verifyTimeoutMs: 120_000 });
    expect(o.domains).toEqual([{ domain: "example.com", weight: 1 }]);
  });
  it("accepts underscores in counts and rates", () => {
    expect(parseInjectArgs(["--count", "10_000_000", "--rate", "1_000"])).toMatchObject({
      count: 10_000_000,
      rate: 1000,
    });
  });
});

describe("environment", () => {
  it("prefers the process environment over .env over defaults; empty means unset", () => {
    const env = resolveToolEnv(
      { KUMO_HTTP_USER: "file", KUMO_HTTP_PASSWORD: "pw", SINK_HTTP_URL: "http://s:1" },
      { KUMO_HTTP_USER: "proc", KUMO_HTTP_PASSWORD: "" },
      "/x/.env",
      true,
      "mail-lab",
    );
    expect(env).toMatchObject({
      kumoUrl: "http://localhost:8000",
      kumoUser: "proc",
      kumoPassword: undefined,
      sinkUrl: "http://s:1",
      namespace: "mail-lab",
    });
  });
});

describe("sink deltas", () => {
  const stats = (accepted: number, deferred: number, bounced: number, started = "t0") =>
    ({ started_at: started, recipients: { accepted, deferred, bounced } }) as SinkStats;
  it("subtracts snapshots, and restarts from zero when the sink restarted", () => {
    expect(sinkDelta(stats(10, 2, 1), stats(15, 5, 3))).toEqual({ delivered: 5, bounced: 2, deferralAttempts: 3 });
    expect(sinkDelta(stats(10, 2, 1), stats(4, 0, 1, "t1"))).toEqual({ delivered: 4, bounced: 1, deferralAttempts: 0 });
  });
});

describe("kubectl and cluster helpers", () => {
  it("reads the local port from port-forward output", () => {
    expect(parsePortForwardLine("Forwarding from 127.0.0.1:40123 -> 8000")).toBe(40123);
    expect(parsePortForwardLine("Forwarding from [::1]:40123 -> 8000")).toBeUndefined();
  });
  it("classifies kubectl failures", () => {
    const refused = "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?";
    expect(classifyKubectlFailure(refused).exitCode).toBe(EXIT.clusterUnreachable);
    expect(classifyKubectlFailure("error: current-context is not set").exitCode).toBe(EXIT.clusterUnreachable);
    expect(classifyKubectlFailure('Error from server (NotFound): namespaces "kumomta" not found').exitCode).toBe(
      EXIT.namespaceMissing,
    );
    expect(classifyKubectlFailure("error: something else").exitCode).toBe(EXIT.commandFailed);
  });
  it("drops klog noise from kubectl messages", () => {
    const stderr = `E1123 21:17:37.926073   24747 memcache.go:265] "Unhandled Error"\nThe connection was refused`;
    expect(kubectlMessage(stderr)).toBe("The connection was refused");
  });
  it("recognises local clusters by Tilt's rules", () => {
    for (const [name, product] of [
      ["kind-kind", "kind"],
      ["kind", "kind"],
      ["k3d-k3s-default", "k3d"],
      ["minikube", "minikube"],
      ["docker-desktop", "docker-desktop"],
      ["docker-for-desktop-cluster", "docker-desktop"],
      ["rancher-desktop", "rancher-desktop"],
      ["colima", "colima"],
      ["orbstack", "orbstack"],
      ["microk8s-cluster", "microk8s"],
    ] as const) {
      expect(localProduct(name)).toBe(product);
    }
    expect(localProduct("gke_project_us-central1_prod")).toBeUndefined();
    expect(localProduct("arn:aws:eks:eu-west-1:1:cluster/prod", "prod")).toBeUndefined();
    expect(localProduct("kindred-prod")).toBeUndefined();
  });
  it("reads pod readiness from kubectl JSON", () => {
    const json = JSON.stringify({
      items: [
        {
          metadata: { name: "kumod-0", labels: { "app.kubernetes.io/name": "kumod" } },
          status: {
            phase: "Running",
            conditions: [{ type: "Ready", status: "True" }],
            containerStatuses: [{ restartCount: 2 }],
          },
        },
        {
          metadata: { name: "tsa-0", labels: { "app.kubernetes.io/name": "tsa-daemon" } },
          status: {
            phase: "Running",
            conditions: [{ type: "Ready", status: "False" }],
            containerStatuses: [{ restartCount: 5, state: { waiting: { reason: "CrashLoopBackOff" } } }],
          },
        },
      ],
    });
    expect(parsePods(json)).toEqual([
      { name: "kumod-0", app: "kumod", phase: "Running", ready: true, restarts: 2, reason: undefined },
      { name: "tsa-0", app: "tsa-daemon", phase: "Running", ready: false, restarts: 5, reason: "CrashLoopBackOff" },
    ]);
  });
  it("accepts TSA suspensions as an array or an object", () => {
    expect(suspensionList([{ a: 1 }])).toEqual([{ a: 1 }]);
    expect(suspensionList({ suspensions: [{ a: 1 }, { b: 2 }] })).toHaveLength(2);
    expect(suspensionList(null)).toEqual([]);
  });
});

describe("doctor results", () => {
  it("compares versions", () => {
    expect(versionAtLeast("v20.20.2", "20.18")).toBe(true);
    expect(versionAtLeast("v20.18.0", "20.18")).toBe(true);
    expect(versionAtLeast("v20.9.0", "20.18")).toBe(false);
    expect(versionAtLeast("v22.1.0", "20.18")).toBe(true);
  });
  it("passes only when every check passed, and prints fixes for the others", () => {
    const checks = [
      { name: "a", state: "pass" as const, detail: "ok", fix: "" },
      { name: "b", state: "fail" as const, detail: "broken", fix: "do x" },
      { name: "c", state: "skip" as const, detail: "skipped: needs b", fix: "" },
    ];
    expect(allPassed(checks)).toBe(false);
    expect(allPassed(checks.slice(0, 1))).toBe(true);
    const text = formatChecks(checks, (s) => `[${s}]`);
    expect(text).toContain("[fail] b: broken\n       fix: do x");
    expect(text).toContain("1 failed, 1 skipped");
  });
});
