import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { buildPlan, type DrillOptions, parseDrillArgs, parseFaultAt } from "../../scripts/lib/drills/plan.ts";
import { DRILLS, findDrill, holdsOutage } from "../../scripts/lib/drills/registry.ts";
import { buildReport, type DrillObservations, decide, formatReport } from "../../scripts/lib/drills/report.ts";
import { jobNameOf, parseInjectOutput, restartsBetween } from "../../scripts/lib/drills/run.ts";
import { EXIT } from "../../scripts/lib/exit-codes.ts";
import { parseInjectArgs } from "../../scripts/lib/inject-args.ts";
import { splitInCluster } from "../../scripts/lib/inject-job.ts";
import type { Summary } from "../../scripts/lib/inject-summary.ts";

const root = path.resolve(import.meta.dirname, "../..");
const drill = (name: string) => {
  const d = findDrill(name);
  if (!d) throw new Error(`no drill ${name}`);
  return d;
};
const opts = (argv: string[]): DrillOptions => parseDrillArgs(argv);

describe("the drill's command line", () => {
  it("takes one drill name and the load, timing and output options", () => {
    const o = opts([
      "sink-outage",
      "--count",
      "12_000",
      "--rate",
      "80",
      "--fault-at",
      "25%",
      "--outage",
      "2m",
      "--json",
    ]);
    expect(o).toMatchObject({ name: "sink-outage", count: 12000, rate: 80, faultAt: { fraction: 0.25 }, outageS: 120 });
    expect(o.json).toBe(true);
    expect(opts(["kumod-restart", "--timeout", "10m", "--dry-run"])).toMatchObject({ timeoutS: 600, dryRun: true });
  });

  it("reads --fault-at as seconds, or as a fraction of the load below 1", () => {
    expect(parseFaultAt("30s")).toEqual({ seconds: 30 });
    expect(parseFaultAt("90")).toEqual({ seconds: 90 });
    expect(parseFaultAt("1m")).toEqual({ seconds: 60 });
    expect(parseFaultAt("0.25")).toEqual({ fraction: 0.25 });
    expect(parseFaultAt(".5")).toEqual({ fraction: 0.5 });
    expect(parseFaultAt("40%")).toEqual({ fraction: 0.4 });
    for (const bad of ["soon", "0", "100%", "150%", "-1", "0%"])
      expect(() => parseFaultAt(bad), bad).toThrow(/--fault-at must be seconds after the load starts/);
  });

  it.each([
    [[], /name a drill: npm run drill -- NAME \(one of kumod-restart, kumod-rollout/],
    [["chaos-monkey"], /unknown drill "chaos-monkey": the drills are kumod-restart/],
    [["kumod-restart", "tsa-restart"], /one drill at a time/],
    [["kumod-restart", "--outage", "30s"], /--outage does not apply to kumod-restart/],
    [["kumod-restart", "--count", "0"], /--count must be a whole number from 1/],
    [["kumod-restart", "--rate", "fast"], /--rate must be recipients per second/],
    [["kumod-restart", "--timeout", "later"], /--timeout must be a duration/],
    [["kumod-restart", "--namespace", "Kumo_MTA"], /is not a Kubernetes namespace name/],
    [["kumod-restart", "--sink-url", "localhost:8025"], /--sink-url "localhost:8025"/],
    [["kumod-restart", "--bogus"], /Unknown option '--bogus'/],
  ])("refuses %j with a message that says what to do", (argv, message) => {
    expect(() => parseDrillArgs(argv)).toThrow(message);
  });

  it("needs no name for --help or --list", () => {
    expect(opts(["--help"]).help).toBe(true);
    expect(opts(["--list"]).list).toBe(true);
  });
});

describe("the plan", () => {
  it("spans the fault with the load and hands the injector its in-cluster, verify and JSON options", () => {
    const plan = buildPlan(drill("kumod-restart"), opts(["kumod-restart"]), "kumomta", "http://localhost:8025");
    expect(plan.loadS).toBe(plan.count / plan.rate);
    expect(plan.faultAtS).toBeGreaterThan(0);
    expect(plan.faultAtS).toBeLessThan(plan.loadS);
    // What the drill hands `npm run inject` is a valid in-cluster command line of the injector's own.
    const { inCluster, argv } = splitInCluster(plan.injectArgs);
    expect(inCluster).toBe(true);
    const inject = parseInjectArgs(argv);
    expect(inject).toMatchObject({ count: plan.count, rate: plan.rate, verify: true, json: true });
    // It rides out the restart and waits for the sink at least as long as the drill's timeout.
    expect(inject.restartBudgetMs).toBeGreaterThanOrEqual(plan.timeoutS * 1000);
    expect(inject.verifyTimeoutMs).toBeGreaterThanOrEqual(plan.timeoutS * 1000);
    expect(plan.steps.join("\n")).toContain("kubectl delete pod kumod-0 -n kumomta --wait=false");
  });

  it("turns a fraction into seconds of the load, and refuses a fault the load would not reach", () => {
    const d = drill("tsa-restart");
    const plan = buildPlan(d, opts(["tsa-restart", "--count", "1000", "--rate", "10", "--fault-at", "0.5"]), "ns", "");
    expect(plan.faultAtS).toBe(50);
    expect(() =>
      buildPlan(d, opts(["tsa-restart", "--count", "100", "--rate", "10", "--fault-at", "10s"]), "ns", ""),
    ).toThrow(/the fault at 10 s would come after the load ends \(100 recipients at 10\/s last 10 s\)/);
  });

  it("holds outages for --outage, waits for them on top of --timeout, and warns when the load ends first", () => {
    const d = drill("sink-outage");
    const plan = buildPlan(d, opts(["sink-outage", "--outage", "90s", "--timeout", "2m"]), "ns", "http://sink:1");
    expect(plan.outageS).toBe(90);
    const inject = parseInjectArgs(splitInCluster(plan.injectArgs).argv);
    expect(inject.verifyTimeoutMs).toBe((120 + 90) * 1000);
    expect(plan.steps.join("\n")).toContain('PUT http://sink:1/api/scenario {"name":"outage"}');
    expect(plan.warnings).toEqual([]);
    const short = buildPlan(d, opts(["sink-outage", "--count", "2000", "--rate", "50", "--outage", "30s"]), "ns", "");
    expect(short.warnings[0]).toMatch(/the outage \(30 s \+ 30 s\) outlasts the load \(40 s\)/);
  });

  it("names the kubectl commands of each fault", () => {
    const steps = (name: string) => buildPlan(drill(name), opts([name]), "kumomta", "http://s").steps.join("\n");
    expect(steps("kumod-rollout")).toContain("kubectl rollout restart statefulset/kumod -n kumomta");
    expect(steps("kumod-rollout")).toContain("kubectl rollout status statefulset/kumod -n kumomta --timeout=600s");
    expect(steps("dragonfly-restart")).toContain("kubectl scale deployment/dragonfly -n kumomta --replicas=0");
    expect(steps("tsa-restart")).toContain("kubectl delete pod tsa-0 -n kumomta --wait=false");
  });
});

describe("the drill registry matches what is deployed", () => {
  // The base and the components the local overlay adds (KumoProxy).
  const dirs = ["k8s/base", ...readdirSync(path.join(root, "k8s/components")).map((c) => `k8s/components/${c}`)];
  const objects = dirs
    .flatMap((dir) =>
      readdirSync(path.join(root, dir))
        .filter((f) => f.endsWith(".yaml") && f !== "kustomization.yaml")
        .map((f) => path.join(root, dir, f)),
    )
    .flatMap((file) => parseAllDocuments(readFileSync(file, "utf8")).map((d) => d.toJS()))
    .filter((o) => o?.kind === "StatefulSet" || o?.kind === "Deployment");

  it.each(DRILLS.map((d) => [d.name, d] as const))(
    "%s hits workloads of k8s/base or a component, by their pods' label",
    (_, d) => {
      for (const w of d.needs) {
        const o = objects.find((x) => x.kind.toLowerCase() === w.kind && x.metadata.name === w.name);
        expect(o, `${w.kind}/${w.name}`).toBeDefined();
        expect(o.spec.template.metadata.labels["app.kubernetes.io/name"]).toBe(w.app);
      }
      if (d.fault.kind === "delete-pod" || d.fault.kind === "rollout-restart")
        expect(d.needs).toContain(d.fault.workload);
      if (d.fault.kind === "delete-pod") expect(d.fault.workload.kind).toBe("statefulset");
    },
  );

  it("switches the sink to a scenario its rules file has", () => {
    const scenarios = Object.keys(parseYaml(readFileSync(path.join(root, "sink/config/sink.yaml"), "utf8")).scenarios);
    for (const d of DRILLS) if (d.fault.kind === "sink-scenario") expect(scenarios).toContain(d.fault.scenario);
  });

  it("documents every drill and the KumoMTA files it cites in docs/drills.md", () => {
    const doc = readFileSync(path.join(root, "docs/drills.md"), "utf8");
    for (const d of DRILLS) {
      expect(doc).toContain(`## \`${d.name}\``);
      for (const s of d.promise.sources) expect(doc, `${d.name}: ${s}`).toContain(s);
    }
  });
});

const summary = (over: Partial<Summary> = {}): Summary => ({
  url: "http://kumod:8000",
  exit_code: 0,
  interrupted: false,
  requests: { sent: 60, ok: 60, failed: 0, retries: 3 },
  recipients: { sent: 6000, accepted: 6000, failed: 0, unknown: 0, maybe_duplicated: 0 },
  targets: [],
  errors: [],
  latency_ms: { p50: 5, p95: 9, p99: 20, max: 900 },
  elapsed_s: 120,
  rate: { recipients_per_s: 50, requests_per_s: 0.5, target_recipients_per_s: 50 },
  verify: {
    sink_url: "http://sink:8025",
    expected: 6000,
    delivered: 5990,
    bounced: 10,
    deferral_attempts: 40,
    complete: true,
    waited_s: 12,
    timeout_s: 300,
  },
  error: null,
  max_rss_bytes: 1,
  ...over,
});

const observed = (over: Partial<DrillObservations> = {}): DrillObservations => ({
  interrupted: false,
  fault: { target: "pod/kumod-0", started_s: 30.2, ended_s: 52.5, restored: null, error: null },
  duringFault: { delivered: 900, bounced: 2, deferralAttempts: 5, window_s: 22.3 },
  kumodRestarts: 0,
  inject: { exitCode: EXIT.ok, summary: summary(), error: null },
  ...over,
});

describe("the verdict", () => {
  it("is nothing lost (exit 0) when every accepted recipient settled at the sink and the fault came during the load", () => {
    expect(decide(observed())).toEqual({ verdict: "nothing-lost", exitCode: EXIT.ok, error: null });
  });

  it("counts the missing recipients (exit 12) when the injector's --verify ended incomplete", () => {
    const s = summary({ exit_code: 12 });
    s.verify = { ...(s.verify as NonNullable<Summary["verify"]>), delivered: 5000, bounced: 10, complete: false };
    const d = decide(observed({ inject: { exitCode: EXIT.verifyIncomplete, summary: s, error: null } }));
    expect(d.verdict).toBe("incomplete");
    expect(d.exitCode).toBe(12);
    expect(d.error?.message).toBe(
      "990 of 6,000 accepted recipients did not reach the sink within 300 s after the load: lost, or still queued",
    );
  });

  it("fails with the fault's own code when the fault could not be applied or its workload did not come back", () => {
    const fault = {
      target: "pod/kumod-0",
      started_s: 30,
      ended_s: null,
      restored: null,
      error: { message: "pod/kumod-0 was not back", hint: "describe it", exit_code: EXIT.commandFailed },
    };
    expect(decide(observed({ fault }))).toEqual({
      verdict: "fault-failed",
      exitCode: 19,
      error: { message: "pod/kumod-0 was not back", hint: "describe it" },
    });
  });

  it("passes the injector's exit code and error through when the load itself failed", () => {
    const error = { message: "kubectl create (the inject Job) failed", hint: "h" };
    expect(decide(observed({ inject: { exitCode: EXIT.commandFailed, summary: null, error } }))).toEqual({
      verdict: "load-failed",
      exitCode: 19,
      error,
    });
  });

  it("proves nothing (exit 2) when the load ended before the fault, or the fault never came", () => {
    const late = observed({
      fault: { target: "pod/kumod-0", started_s: 125, ended_s: 140, restored: null, error: null },
    });
    expect(decide(late)).toMatchObject({ verdict: "not-proven", exitCode: EXIT.notProven });
    expect(decide(late).error?.message).toContain("the load ended (120 s) before the fault started (125 s)");
    const never = observed({
      fault: { target: "pod/kumod-0", started_s: null, ended_s: null, restored: null, error: null },
    });
    expect(decide(never).verdict).toBe("not-proven");
  });

  it("says interrupted (exit 130) on Ctrl-C, whatever else happened", () => {
    expect(decide(observed({ interrupted: true })).exitCode).toBe(130);
    const injector = { exitCode: EXIT.interrupted, summary: summary(), error: null };
    expect(decide(observed({ inject: injector })).verdict).toBe("interrupted");
  });
});

describe("the report", () => {
  it("answers the Dragonfly drill's question from the sink's counts during the outage", () => {
    const d = drill("dragonfly-restart");
    const plan = buildPlan(d, opts([d.name]), "kumomta", "http://s");
    const kept = buildReport(d, plan, observed());
    expect(kept.delivery_during_fault).toBe("kept-delivering");
    const paused = buildReport(
      d,
      plan,
      observed({ duringFault: { delivered: 0, bounced: 0, deferralAttempts: 0, window_s: 30 } }),
    );
    expect(paused.delivery_during_fault).toBe("paused");
    // Drills that do not ask leave it out.
    expect(buildReport(drill("kumod-restart"), plan, observed()).delivery_during_fault).toBeNull();
  });

  it("shows the verdict, the accounting and the fault's timing in the readable summary", () => {
    const d = drill("kumod-restart");
    const report = buildReport(d, buildPlan(d, opts([d.name]), "kumomta", "http://s"), observed());
    expect(report).toMatchObject({ verdict: "nothing-lost", nothing_lost: true, exit_code: 0 });
    const text = formatReport(report);
    expect(text).toContain("drill kumod-restart: one kumod pod deleted under load: NOTHING LOST");
    expect(text).toContain("pod/kumod-0 at 30.2 s, over 22.3 s later");
    expect(text).toContain("5,990 delivered + 10 bounced = 6,000 of 6,000 accepted");
    expect(text).toContain("docs/faq/slow_shutdown.md");
  });
});

describe("reading the injector", () => {
  it("takes its summary, or its error when it could not run, from its last stdout line", () => {
    const s = summary();
    expect(parseInjectOutput(`${JSON.stringify(s)}\n`).summary?.recipients.accepted).toBe(6000);
    const failed = parseInjectOutput(
      JSON.stringify({ exit_code: 14, error: { message: "refused", hint: "start it" } }),
    );
    expect(failed).toEqual({ summary: null, error: { message: "refused", hint: "start it" } });
    expect(parseInjectOutput("")).toEqual({ summary: null, error: null });
  });

  it("finds the Job's name in its first line", () => {
    expect(jobNameOf("job/inject-x7k2p in namespace kumomta (image console:tilt-1): injecting from the cluster")).toBe(
      "inject-x7k2p",
    );
    expect(jobNameOf("waiting for kumod http://kumod:8000")).toBeUndefined();
  });

  it("counts kumod container restarts during the drill, a recreated pod starting again at 0", () => {
    const before = new Map([
      ["kumod-0", 2],
      ["kumod-1", 0],
    ]);
    const after = new Map([
      ["kumod-0", 0],
      ["kumod-1", 1],
      ["kumod-2", 1],
    ]);
    expect(restartsBetween(before, after)).toBe(2);
  });
});

it("every drill that holds its fault has an outage length", () => {
  for (const d of DRILLS) if (holdsOutage(d.fault)) expect(d.defaults.outageS).toBeGreaterThan(0);
});
