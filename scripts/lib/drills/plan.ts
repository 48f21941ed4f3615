import { parseArgs } from "node:util";
import { parseDurationMs } from "../pacing.ts";
import { httpUrlProblem, SINK_API } from "../urls.ts";
import { DRILL_DOMAINS, DRILLS, type Drill, type FaultAt, findDrill, holdsOutage, podName } from "./registry.ts";

/** Pure parts of `npm run drill`: the command line, and the plan it leads to (load, fault timing, commands). */

export interface DrillOptions {
  help: boolean;
  list: boolean;
  name?: string;
  count?: number;
  rate?: number;
  faultAt?: FaultAt;
  outageS?: number;
  timeoutS?: number;
  namespace?: string;
  sinkUrl?: string;
  json: boolean;
  dryRun: boolean;
}

function positiveInt(flag: string, text: string | undefined, max: number): number | undefined {
  if (text === undefined) return undefined;
  const clean = text.replaceAll("_", "");
  const v = /^\d+$/.test(clean) ? Number(clean) : Number.NaN;
  if (!Number.isSafeInteger(v) || v < 1 || v > max)
    throw new Error(`--${flag} must be a whole number from 1 to ${max.toLocaleString("en-US")}, got "${text}"`);
  return v;
}

function seconds(flag: string, text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const ms = parseDurationMs(text);
  if (ms === undefined || ms <= 0) throw new Error(`--${flag} must be a duration like 30s, 2m or 90, got "${text}"`);
  return ms / 1000;
}

/**
 * Pure: "30s", "90" (seconds), "1m" → seconds after the injector starts; "0.25" or "25%" → that fraction of the
 * planned load (count / rate).
 */
export function parseFaultAt(text: string): FaultAt {
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)%$/.exec(t);
  const fraction = pct ? Number(pct[1]) / 100 : /^0?\.\d+$/.test(t) ? Number(t) : undefined;
  if (fraction !== undefined) {
    if (fraction > 0 && fraction < 1) return { fraction };
  } else {
    const ms = parseDurationMs(t);
    if (ms !== undefined && ms > 0) return { seconds: ms / 1000 };
  }
  throw new Error(
    `--fault-at must be seconds after the load starts (30s, 90, 1m) or a fraction of the load below 1 (0.25, 25%), got "${text}"`,
  );
}

/** Pure: argv → options, or an Error whose message is for the user (exit code "usage"). */
export function parseDrillArgs(argv: string[]): DrillOptions {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      help: { type: "boolean", short: "h" },
      list: { type: "boolean" },
      count: { type: "string", short: "n" },
      rate: { type: "string", short: "r" },
      "fault-at": { type: "string" },
      outage: { type: "string" },
      timeout: { type: "string" },
      namespace: { type: "string" },
      "sink-url": { type: "string" },
      json: { type: "boolean" },
      "dry-run": { type: "boolean" },
    },
  });
  if (positionals.length > 1) throw new Error(`one drill at a time, got ${positionals.join(" ")}`);
  const name = positionals[0];
  const help = values.help ?? false;
  const list = values.list ?? false;
  if (name === undefined && !help && !list)
    throw new Error(`name a drill: npm run drill -- NAME (one of ${DRILLS.map((d) => d.name).join(", ")})`);
  if (name !== undefined && !findDrill(name))
    throw new Error(`unknown drill "${name}": the drills are ${DRILLS.map((d) => d.name).join(", ")}`);
  const rateText = values.rate;
  let rate: number | undefined;
  if (rateText !== undefined) {
    rate = Number(rateText.replaceAll("_", ""));
    if (!Number.isFinite(rate) || rate <= 0 || rate > 1_000_000)
      throw new Error(`--rate must be recipients per second, a number above 0, got "${rateText}"`);
  }
  const sinkUrl = values["sink-url"];
  if (sinkUrl !== undefined) {
    const problem = httpUrlProblem(sinkUrl);
    if (problem !== undefined) throw new Error(`--sink-url "${sinkUrl}" ${problem}: give it like ${SINK_API.example}`);
  }
  const drill = name === undefined ? undefined : findDrill(name);
  if (values.outage !== undefined && drill && !holdsOutage(drill.fault))
    throw new Error(
      `--outage does not apply to ${drill.name}: its fault ends when the pods are back, not after a time`,
    );
  if (values.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(values.namespace))
    throw new Error(`--namespace "${values.namespace}" is not a Kubernetes namespace name (lower case, digits, -)`);
  return {
    help,
    list,
    name,
    count: positiveInt("count", values.count, 100_000_000),
    rate,
    faultAt: values["fault-at"] === undefined ? undefined : parseFaultAt(values["fault-at"]),
    outageS: seconds("outage", values.outage),
    timeoutS: seconds("timeout", values.timeout),
    namespace: values.namespace,
    sinkUrl,
    json: values.json ?? false,
    dryRun: values["dry-run"] ?? false,
  };
}

export interface DrillPlan {
  drill: string;
  title: string;
  namespace: string;
  sinkUrl: string;
  count: number;
  rate: number;
  /** count / rate: how long the injector sends. */
  loadS: number;
  faultAtS: number;
  outageS: number | null;
  timeoutS: number;
  /** `npm run inject -- ...` as the drill runs it. */
  injectArgs: string[];
  /** What the drill does, in order, as commands a user could run by hand. */
  steps: string[];
  /** A caution that does not stop the drill (the outage outlasting the load). */
  warnings: string[];
}

const round = (x: number) => Math.round(x * 10) / 10;

/** A duration as inject's flags take it. */
export const flagSeconds = (s: number) => `${Math.ceil(s)}s`;

/** Pure: the drill's plan, or an Error (a usage error) when the fault would not fall within the load. */
export function buildPlan(drill: Drill, opts: DrillOptions, namespace: string, sinkUrl: string): DrillPlan {
  const count = opts.count ?? drill.defaults.count;
  const rate = opts.rate ?? drill.defaults.rate;
  const loadS = count / rate;
  const at = opts.faultAt ?? drill.defaults.faultAt;
  const faultAtS = "seconds" in at ? at.seconds : at.fraction * loadS;
  if (faultAtS >= loadS)
    throw new Error(
      `the fault at ${round(faultAtS)} s would come after the load ends (${count} recipients at ${rate}/s last ${round(loadS)} s): raise --count, lower --rate or --fault-at`,
    );
  const outageS = holdsOutage(drill.fault) ? (opts.outageS ?? drill.defaults.outageS ?? 60) : null;
  const timeoutS = opts.timeoutS ?? drill.defaults.timeoutS;
  const warnings: string[] = [];
  if (outageS !== null && faultAtS + outageS > loadS)
    warnings.push(
      `the outage (${round(faultAtS)} s + ${round(outageS)} s) outlasts the load (${round(loadS)} s): mail injected during the whole outage needs a longer load (--count)`,
    );
  // The injector waits for the whole fault and then for the sink: its budgets cover the drill's.
  const verifyTimeoutS = timeoutS + (outageS ?? 0);
  const injectArgs = [
    "--in-cluster",
    "--count",
    String(count),
    "--rate",
    String(rate),
    "--domains",
    DRILL_DOMAINS,
    "--verify",
    "--verify-timeout",
    flagSeconds(verifyTimeoutS),
    "--restart-budget",
    flagSeconds(Math.min(timeoutS, 3600)),
    "--json",
  ];
  const ns = `-n ${namespace}`;
  const f = drill.fault;
  const faultSteps = ((): string[] => {
    switch (f.kind) {
      case "delete-pod": {
        const pod = podName(f.workload, f.ordinal);
        return [
          `kubectl delete pod ${pod} ${ns} --wait=false`,
          `wait until pod/${pod} is back (a new uid) and Ready: kubectl get pod ${pod} ${ns} -o json, every 2 s, up to ${timeoutS} s`,
        ];
      }
      case "rollout-restart":
        return [
          `kubectl rollout restart ${f.workload.kind}/${f.workload.name} ${ns}`,
          `kubectl rollout status ${f.workload.kind}/${f.workload.name} ${ns} --timeout=${flagSeconds(timeoutS)}`,
        ];
      case "scale-outage":
        return [
          `kubectl get ${f.workload.kind} ${f.workload.name} ${ns} -o json   # remember spec.replicas`,
          `kubectl scale ${f.workload.kind}/${f.workload.name} ${ns} --replicas=0`,
          `hold the outage ${round(outageS ?? 0)} s (from the moment no pod of app.kubernetes.io/name=${f.workload.app} is left)`,
          `kubectl scale ${f.workload.kind}/${f.workload.name} ${ns} --replicas=<remembered>   # also on Ctrl-C or a failure`,
          `kubectl rollout status ${f.workload.kind}/${f.workload.name} ${ns} --timeout=${flagSeconds(timeoutS)}`,
        ];
      case "sink-scenario":
        return [
          `GET ${sinkUrl}/api/scenario   # remember the active scenario`,
          `PUT ${sinkUrl}/api/scenario {"name":"${f.scenario}"}`,
          `hold the outage ${round(outageS ?? 0)} s`,
          `PUT ${sinkUrl}/api/scenario <the remembered one>   # also on Ctrl-C or a failure`,
        ];
    }
  })();
  const steps = [
    `kubectl get namespace ${namespace}; kubectl get ${drill.needs.map((w) => `${w.kind}/${w.name}`).join(" ")} ${ns}`,
    `GET ${sinkUrl}/api/stats   # the sink answers (the drill reads its counts around the fault)`,
    `npm run inject -- ${injectArgs.join(" ")}   # KUMOMTA_NAMESPACE=${namespace}`,
    `at ${round(faultAtS)} s after the injector's pod runs (load lasts ${round(loadS)} s):`,
    ...faultSteps.map((s) => `  ${s}`),
    `wait for the injector's --verify: every accepted recipient delivered or bounced at the sink`,
  ];
  return {
    drill: drill.name,
    title: drill.title,
    namespace,
    sinkUrl,
    count,
    rate,
    loadS: round(loadS),
    faultAtS: round(faultAtS),
    outageS,
    timeoutS,
    injectArgs,
    steps,
    warnings,
  };
}
