import { runMain, usageError } from "./lib/cli.ts";
import { requireWorkload } from "./lib/drills/faults.ts";
import { buildPlan, type DrillOptions, type DrillPlan, parseDrillArgs } from "./lib/drills/plan.ts";
import { DRILLS, type Drill, findDrill, holdsOutage } from "./lib/drills/registry.ts";
import { buildReport, formatReport, planNumbers } from "./lib/drills/report.ts";
import { runDrill } from "./lib/drills/run.ts";
import { loadToolEnv } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import { requireNamespace } from "./lib/kubectl.ts";
import { getSinkStats, SinkBadPortError } from "./lib/sink-api.ts";
import { apiBaseUrl, SINK_API, sinkBadPortError } from "./lib/urls.ts";

const list = DRILLS.map((d) => `  ${d.name.padEnd(18)} ${d.title}`).join("\n");

const HELP = `Usage: npm run drill -- NAME [options]

Runs a fault under a steady load injected from inside the cluster (\`npm run inject -- --in-cluster --verify\`)
and reports, from the injector's accounting, whether every recipient kumod accepted was delivered or bounced at
the sink. docs/drills.md says what KumoMTA promises for each fault and what the drills observed.

Drills:
${list}

Options:
  -n, --count N        recipients injected [default: the drill's, enough to span the fault]
  -r, --rate R         recipients per second [default: the drill's, 50]
  --fault-at T         when the fault comes after the injector's pod runs: seconds (30s, 90, 1m) or a fraction of
                       the load count/rate below 1 (0.25, 25%) [default: the drill's]
  --outage T           how long dragonfly-restart and sink-outage hold their fault [30s and 60s]
  --timeout T          how long the faulted workload may take to come back, and the sink to settle every accepted
                       recipient after the load (the injector's --verify-timeout) [default: the drill's, 5m or 10m]
  --namespace NS       [KUMOMTA_NAMESPACE, default the overlay's]
  --sink-url URL       the sink's HTTP API, read around the fault and used by sink-outage
                       [SINK_HTTP_URL, default http://localhost:8025, tilt up's port-forward]
  --dry-run            print the plan and the commands it would run; touches nothing
  --json               one JSON object on stdout: verdict, nothing_lost, the accounting, the fault's timing
                       (exit_code and error say how it ended)
  --list               the drills, one a line
  -h, --help           this text

While it runs, progress lines go to stderr: the injector's (inject|), the fault's (fault|) and the drill's.
Ctrl-C undoes a held fault (Dragonfly scaled back, the sink's scenario restored) and stops the injector.

Examples:
  npm run drill -- kumod-restart
  npm run drill -- sink-outage --outage 2m --count 12000
  npm run drill -- dragonfly-restart --json > drill.json
  npm run drill -- kumod-rollout --dry-run

Exit codes:
${exitCodeTable([
  EXIT.ok,
  EXIT.internal,
  EXIT.usage,
  EXIT.kumodUnreachable,
  EXIT.unavailable,
  EXIT.sinkUnreachable,
  EXIT.verifyIncomplete,
  EXIT.kubectlMissing,
  EXIT.clusterUnreachable,
  EXIT.namespaceMissing,
  EXIT.unknownScenario,
  EXIT.commandFailed,
  EXIT.interrupted,
])}
  Here 0 means nothing was lost: every accepted recipient delivered or bounced, the fault inside the load.
  2 also: the load ended before the fault (nothing proven). 12: accepted recipients missing at the sink after
  --timeout. 19 also: the fault could not be applied or its workload did not come back within --timeout.
  Other codes are the injector's (npm run inject -- --help).
`;

function planText(plan: DrillPlan, drill: Drill): string {
  const lines = [
    `drill ${plan.drill}: ${plan.title}`,
    `  load     ${plan.count} recipients at ${plan.rate}/s (${plan.loadS} s), from a Job in namespace ${plan.namespace}`,
    `  fault    at ${plan.faultAtS} s${plan.outageS === null ? "" : `, held ${plan.outageS} s`}; timeout ${plan.timeoutS} s`,
    `  promise  ${drill.promise.text}`,
    "  steps:",
    ...plan.steps.map((s) => `    ${s}`),
    ...plan.warnings.map((w) => `  warning: ${w}`),
  ];
  return lines.join("\n");
}

/** The plan as --dry-run --json prints it, in the snake_case of every tool's JSON. */
function planJson(plan: DrillPlan, drill: Drill) {
  return {
    dry_run: true,
    drill: plan.drill,
    title: plan.title,
    namespace: plan.namespace,
    sink_url: plan.sinkUrl,
    ...planNumbers(plan),
    inject_args: plan.injectArgs,
    steps: plan.steps,
    warnings: plan.warnings,
    promise: drill.promise,
  };
}

async function preflight(drill: Drill, plan: DrillPlan): Promise<void> {
  await requireNamespace(plan.namespace);
  for (const w of drill.needs) await requireWorkload(plan.namespace, w);
  try {
    await getSinkStats(plan.sinkUrl);
  } catch (err) {
    if (err instanceof SinkBadPortError) throw sinkBadPortError(err);
    throw new CliError(
      EXIT.sinkUnreachable,
      `the sink's HTTP API does not answer: ${(err as Error).message}`,
      "The drill reads the sink's counts around the fault: is `tilt up` running with its port-forward to sink:8025? " +
        "Otherwise `kubectl -n kumomta port-forward svc/sink 8025:8025` and set --sink-url or SINK_HTTP_URL. Nothing was done.",
    );
  }
}

const t0 = performance.now();
function say(line: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(1).padStart(6);
  process.stderr.write(`[${s}s] ${line}\n`);
}

async function main(argv: string[]): Promise<ExitCode> {
  let opts: DrillOptions;
  try {
    opts = parseDrillArgs(argv);
  } catch (err) {
    throw usageError((err as Error).message, "drill");
  }
  if (opts.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  if (opts.list) {
    if (opts.json)
      process.stdout.write(
        `${JSON.stringify(DRILLS.map((d) => ({ name: d.name, title: d.title, holds_outage: holdsOutage(d.fault), promise: d.promise })))}\n`,
      );
    else process.stdout.write(`${list}\n`);
    return EXIT.ok;
  }
  const drill = findDrill(opts.name as string) as Drill;
  const env = loadToolEnv();
  const namespace = opts.namespace ?? env.namespace;
  const sinkUrl = opts.sinkUrl ?? env.sinkUrl;
  apiBaseUrl(sinkUrl, SINK_API);
  let plan: DrillPlan;
  try {
    plan = buildPlan(drill, opts, namespace, sinkUrl);
  } catch (err) {
    throw usageError((err as Error).message, "drill");
  }
  if (opts.dryRun) {
    if (opts.json) process.stdout.write(`${JSON.stringify(planJson(plan, drill))}\n`);
    else process.stdout.write(`${planText(plan, drill)}\n(dry run: nothing was done)\n`);
    return EXIT.ok;
  }
  for (const w of plan.warnings) say(`warning: ${w}`);
  await preflight(drill, plan);
  say(`drill ${drill.name}: ${plan.count} recipients at ${plan.rate}/s, the fault at ${plan.faultAtS} s`);
  const obs = await runDrill(drill, plan, { say });
  const report = buildReport(drill, plan, obs);
  if (!opts.json) process.stdout.write(`${formatReport(report)}\n`);
  if (report.error) throw new CliError(report.exit_code, report.error.message, report.error.hint, { ...report });
  if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
  return report.exit_code;
}

runMain(() => main(process.argv.slice(2)));
