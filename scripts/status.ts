import chalk from "chalk";
import { parseNamespaceToolArgs, runMain } from "./lib/cli.ts";
import { loadToolEnv } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import { listPods, type PodInfo, portForward, requireNamespace } from "./lib/kubectl.ts";
import { type KumodQueueSummary, kumodQueueSummary, parsePrometheus } from "./lib/prometheus.ts";
import { getScenario, getSinkStats, SinkBadPortError, type SinkStats } from "./lib/sink-api.ts";
import { suspensionList } from "./lib/tsa.ts";
import { parseShapingOverrides, type ShapingOverride } from "./lib/tsa-config.ts";
import { apiBaseUrl, SINK_API, sinkBadPortError } from "./lib/urls.ts";

const HELP = `Usage: npm run status -- [--json] [--namespace NS]

One screen about the running cluster:
  - per kumod pod: readiness and its ready / scheduled queue counts, read from kumod's /metrics through a
    short-lived \`kubectl port-forward\` (a loopback peer, which kumod trusts; no credentials needed)
  - TSA suspensions (/get_suspension_v1/suspended.json on each tsa pod, the same way)
  - sink counters and the active scenario (SINK_HTTP_URL, default http://localhost:8025)

Options:
  --namespace NS   Kubernetes namespace [KUMOMTA_NAMESPACE, default kumomta]
  --json           print one JSON object (also on failure, with exit_code and error)
  -h, --help       this text

Exit codes:
${exitCodeTable([EXIT.ok, EXIT.usage, EXIT.sinkUnreachable, EXIT.kubectlMissing, EXIT.clusterUnreachable, EXIT.namespaceMissing, EXIT.commandFailed])}
  (11: everything else was read but the sink API did not answer; 19: a pod could not be read;
   2 also: SINK_HTTP_URL is not http://, or its port is one fetch refuses)
`;

interface KumodPodStatus extends PodInfo {
  queues?: KumodQueueSummary;
  error?: string;
}

interface TsaPodStatus extends PodInfo {
  suspensions?: unknown[];
  /** The config overrides TSA serves to kumod (SetConfig actions), with why and until when. */
  overrides?: ShapingOverride[];
  error?: string;
}

async function fetchThroughForward(namespace: string, pod: string, port: number, path: string): Promise<string> {
  const pf = await portForward(namespace, `pod/${pod}`, port);
  try {
    const res = await fetch(`http://127.0.0.1:${pf.port}${path}`, { signal: AbortSignal.timeout(10_000) });
    const text = await res.text();
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.trim().slice(0, 200)}`);
    return text;
  } finally {
    await pf.close();
  }
}

async function kumodStatus(namespace: string, pod: PodInfo): Promise<KumodPodStatus> {
  if (pod.phase !== "Running") return { ...pod, error: `pod is ${pod.reason ?? pod.phase}` };
  try {
    const text = await fetchThroughForward(namespace, pod.name, 8000, "/metrics");
    return { ...pod, queues: kumodQueueSummary(parsePrometheus(text)) };
  } catch (err) {
    return { ...pod, error: (err as Error).message };
  }
}

async function tsaStatus(namespace: string, pod: PodInfo): Promise<TsaPodStatus> {
  if (pod.phase !== "Running") return { ...pod, error: `pod is ${pod.reason ?? pod.phase}` };
  try {
    const text = await fetchThroughForward(namespace, pod.name, 8008, "/get_suspension_v1/suspended.json");
    const config = await fetchThroughForward(namespace, pod.name, 8008, "/get_config_v1/shaping.toml");
    return { ...pod, suspensions: suspensionList(JSON.parse(text)), overrides: parseShapingOverrides(config) };
  } catch (err) {
    return { ...pod, error: (err as Error).message };
  }
}

async function sinkStatus(url: string): Promise<{ stats?: SinkStats; available?: string[]; error?: string }> {
  try {
    const [stats, scenario] = await Promise.all([getSinkStats(url), getScenario(url)]);
    return { stats, available: scenario.available };
  } catch (err) {
    // A port fetch refuses is a setting to fix, not a sink that is down: stop with a usage error.
    if (err instanceof SinkBadPortError) throw sinkBadPortError(err);
    return { error: (err as Error).message };
  }
}

const n = (x: number) => x.toLocaleString("en-US");
const podState = (p: PodInfo) =>
  p.ready ? chalk.green("ready") : chalk.red(p.reason ?? (p.phase === "Running" ? "not ready" : p.phase));

function render(
  ns: string,
  kumods: KumodPodStatus[],
  tsas: TsaPodStatus[],
  sink: Awaited<ReturnType<typeof sinkStatus>>,
  sinkUrl: string,
) {
  const out: string[] = [chalk.bold(`kumod (namespace ${ns})`)];
  if (kumods.length === 0) out.push("  no kumod pods (is `tilt up` running?)");
  for (const p of kumods) {
    const q = p.queues;
    const line = q
      ? `scheduled ${n(q.scheduled)}  ready ${n(q.ready)}  connections ${n(q.connections)}  delivered ${n(q.delivered)}  transfail ${n(q.transientFailures)}  fail ${n(q.permanentFailures)}`
      : chalk.yellow(p.error ?? "");
    out.push(`  ${p.name.padEnd(10)} ${podState(p).padEnd(18)} restarts ${p.restarts}  ${line}`);
    for (const t of q?.topScheduled ?? []) out.push(`      scheduled ${String(n(t.count)).padStart(8)}  ${t.queue}`);
    for (const t of q?.topReady ?? []) out.push(`      ready     ${String(n(t.count)).padStart(8)}  ${t.queue}`);
  }
  out.push(chalk.bold("tsa-daemon"));
  if (tsas.length === 0) out.push("  no tsa pods");
  for (const p of tsas) {
    const s = p.suspensions;
    const o = p.overrides ?? [];
    const line = s
      ? `${s.length} suspension${s.length === 1 ? "" : "s"}, ${o.length} config override${o.length === 1 ? "" : "s"}`
      : chalk.yellow(p.error ?? "");
    out.push(`  ${p.name.padEnd(10)} ${podState(p).padEnd(18)} ${line}`);
    for (const x of (s ?? []).slice(0, 5)) out.push(`      suspended ${JSON.stringify(x).slice(0, 160)}`);
    for (const x of o.slice(0, 5))
      out.push(
        `      ${x.domain} (${x.source}): ${x.name} = ${x.value} until ${x.expires}  ${chalk.dim(x.reason.slice(0, 80))}`,
      );
  }
  out.push(chalk.bold(`sink (${sinkUrl})`));
  if (sink.stats) {
    const st = sink.stats;
    out.push(`  scenario ${chalk.cyan(st.scenario)} (available: ${(sink.available ?? []).join(", ")})`);
    out.push(
      `  recipients accepted ${n(st.recipients.accepted)}, deferred ${n(st.recipients.deferred)}, bounced ${n(st.recipients.bounced)}`,
    );
    out.push(
      `  messages accepted ${n(st.messages.accepted)}; connections active ${n(st.connections.active)}, total ${n(st.connections.total)}, STARTTLS ${n(st.connections.tls)}`,
    );
  } else out.push(`  ${chalk.yellow(sink.error ?? "")}`);
  return out.join("\n");
}

/** The error a finished run ends with, or undefined when everything was read. */
function failure(kumods: KumodPodStatus[], tsas: TsaPodStatus[], sinkError: string | undefined, ns: string) {
  const unread = [...kumods, ...tsas].filter((p) => p.error !== undefined);
  if (unread.length > 0) {
    return {
      code: EXIT.commandFailed,
      message: `could not read ${unread.map((p) => `${p.name} (${p.error})`).join(", ")}`,
      hint: `See the Tilt UI, or \`kubectl describe pod -n ${ns} <pod>\` and \`kubectl logs -n ${ns} <pod>\`.`,
    };
  }
  if (sinkError !== undefined) {
    return {
      code: EXIT.sinkUnreachable,
      message: sinkError,
      hint: "Is `tilt up` running with its port-forward to sink:8025 (or `npm run sink` locally)? Set SINK_HTTP_URL otherwise.",
    };
  }
  return undefined;
}

async function main(): Promise<ExitCode> {
  const values = parseNamespaceToolArgs("status", HELP);
  if (values === null) return EXIT.ok;
  const env = loadToolEnv();
  apiBaseUrl(env.sinkUrl, { ...SINK_API, flag: undefined });
  const ns = values.namespace ?? env.namespace;
  await requireNamespace(ns);
  const [kumodPods, tsaPods, sink] = await Promise.all([
    listPods(ns, "app.kubernetes.io/name=kumod"),
    listPods(ns, "app.kubernetes.io/name=tsa-daemon"),
    sinkStatus(env.sinkUrl),
  ]);
  const kumods = await Promise.all(kumodPods.map((p) => kumodStatus(ns, p)));
  const tsas = await Promise.all(tsaPods.map((p) => tsaStatus(ns, p)));
  const failed = failure(kumods, tsas, sink.error, ns);
  const code = failed?.code ?? EXIT.ok;
  const report = { namespace: ns, exit_code: code, kumod: kumods, tsa: tsas, sink: { url: env.sinkUrl, ...sink } };
  if (!values.json) process.stdout.write(`${render(ns, kumods, tsas, sink, env.sinkUrl)}\n`);
  if (failed) throw new CliError(failed.code, failed.message, failed.hint, report);
  if (values.json) process.stdout.write(`${JSON.stringify({ ...report, error: null })}\n`);
  return code;
}

runMain(main);
