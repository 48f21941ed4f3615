import chalk from "chalk";
import { parseNamespaceToolArgs, runMain } from "./lib/cli.ts";
import { loadToolEnv } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import { kubectlOk, listPods, type PodInfo, portForward, requireNamespace } from "./lib/kubectl.ts";
import { type KumodQueueSummary, parsePrometheus, type Sample } from "./lib/prometheus.ts";
import { getScenario, getSinkStats, SinkBadPortError, type SinkCounts, type SinkStats } from "./lib/sink-api.ts";
import {
  otherSinkClients,
  type ProxyMetrics,
  type ProxyPod,
  parseProxyPods,
  proxyMetrics,
  type SinkIpCounts,
  sinkCountsFor,
} from "./lib/status-proxy.ts";
import { kumodPodSummary, type SourceSiteRow, sourceSiteTable } from "./lib/status-queues.ts";
import { suspensionList } from "./lib/tsa.ts";
import { parseShapingOverrides, type ShapingOverride } from "./lib/tsa-config.ts";
import { apiBaseUrl, SINK_API, sinkBadPortError } from "./lib/urls.ts";

const HELP = `Usage: npm run status -- [--json] [--namespace NS]

One screen about the running cluster:
  - per kumod pod: readiness and its ready / scheduled queue counts, read from kumod's /metrics through a
    short-lived \`kubectl port-forward\` (a loopback peer, which kumod trusts; no credentials needed)
  - TSA suspensions (/get_suspension_v1/suspended.json on each tsa pod, the same way)
  - sending IPs: each KumoProxy pod (egress source proxy-N), its pod IP, its /metrics (port 8080, the same way)
    and what the sink counted from that IP
  - ready queues by egress source and site, summed over the kumod pods, with TSA's suspensions of each pair
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

interface ProxyPodStatus extends ProxyPod {
  /** kumod's egress source through this pod: proxy-N is pod proxy-N (policy/sources.toml). */
  source: string;
  metrics?: ProxyMetrics;
  /** What the sink counted from this pod's IP (absent: no connection yet, or the sink did not answer). */
  sink?: SinkIpCounts;
  error?: string;
}

interface ProxySection {
  /** false when the namespace has no StatefulSet proxy (the component is not deployed). */
  deployed: boolean;
  pods: ProxyPodStatus[];
  /** Sink client IPs that are no proxy pod's (kumod's own IPs for the direct source, replaced pods, _other). */
  other_sink_clients: ReturnType<typeof otherSinkClients>;
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

/** A pod's status, and for kumod its samples, which the source × site table sums over the pods. */
async function kumodStatus(namespace: string, pod: PodInfo): Promise<{ status: KumodPodStatus; samples?: Sample[] }> {
  if (pod.phase !== "Running") return { status: { ...pod, error: `pod is ${pod.reason ?? pod.phase}` } };
  try {
    const samples = parsePrometheus(await fetchThroughForward(namespace, pod.name, 8000, "/metrics"));
    return { status: { ...pod, queues: kumodPodSummary(samples) }, samples };
  } catch (err) {
    return { status: { ...pod, error: (err as Error).message } };
  }
}

/** The proxy pods, or undefined when the namespace has no StatefulSet proxy. */
async function listProxyPods(namespace: string): Promise<ProxyPod[] | undefined> {
  const get = ["get", "-n", namespace, "--request-timeout=10s"];
  const sts = await kubectlOk([...get, "statefulset", "proxy", "--ignore-not-found", "-o", "name"]);
  if (sts.trim() === "") return undefined;
  return parseProxyPods(await kubectlOk([...get, "pods", "-l", "app.kubernetes.io/name=kumoproxy", "-o", "json"]));
}

async function proxyStatus(namespace: string, pod: ProxyPod): Promise<ProxyPodStatus> {
  const base = { ...pod, source: pod.name };
  if (pod.phase !== "Running") return { ...base, error: `pod is ${pod.reason ?? pod.phase}` };
  try {
    // /metrics answers trusted peers only; the port-forward arrives from the pod's loopback, which is trusted.
    const text = await fetchThroughForward(namespace, pod.name, 8080, "/metrics");
    return { ...base, metrics: proxyMetrics(parsePrometheus(text)) };
  } catch (err) {
    return { ...base, error: (err as Error).message };
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

const outcomes = (c: SinkCounts) => `accepted ${n(c.accepted)}, deferred ${n(c.deferred)}, bounced ${n(c.bounced)}`;

function proxyLines(ns: string, proxy: ProxySection, sinkRead: boolean): string[] {
  const out = [chalk.bold("sending IPs (KumoProxy pods)")];
  if (!proxy.deployed) {
    out.push(
      `  the proxy component is not deployed (no StatefulSet proxy in namespace ${ns}): kumod sends from its own IP`,
    );
    return out;
  }
  if (proxy.pods.length === 0) out.push("  no proxy pods (StatefulSet proxy has no replicas yet)");
  for (const p of proxy.pods) {
    const m = p.metrics;
    const line = m
      ? `connections active ${n(m.active)}  accepted ${n(m.accepted)}  failed ${n(m.failed)}`
      : chalk.yellow(p.error ?? "");
    out.push(`  ${p.name.padEnd(10)} ${podState(p).padEnd(18)} ${(p.ip ?? "no IP").padEnd(15)} ${line}`);
    for (const [site, c] of Object.entries(p.sink?.sites ?? {}))
      out.push(
        `      sink ${site.padEnd(8)} connections ${n(c.connections)}  messages ${outcomes(c.messages)}  recipients ${outcomes(c.recipients)}`,
      );
    if (sinkRead && !p.sink && p.ip) out.push(`      sink: nothing from ${p.ip} yet`);
  }
  for (const o of proxy.other_sink_clients)
    out.push(
      `  ${chalk.dim("not a proxy pod:")} ${o.ip}  sink connections ${n(o.counts.connections)}  messages ${outcomes(o.counts.messages)}`,
    );
  return out;
}

function readyQueueLines(rows: SourceSiteRow[], pods: number): string[] {
  const out = [chalk.bold(`ready queues by source and site (summed over ${pods} kumod pod${pods === 1 ? "" : "s"})`)];
  if (rows.length === 0) {
    out.push("  no SMTP ready queues (kumod drops an idle queue's metrics)");
    return out;
  }
  const sw = Math.max(6, ...rows.map((r) => r.source.length));
  const tw = Math.max(4, ...rows.map((r) => r.site.length));
  const num = (x: number, w: number) => n(x).padStart(w);
  out.push(
    chalk.dim(
      `  ${"source".padEnd(sw)}  ${"site".padEnd(tw)}  ${"ready".padStart(8)}  ${"conns".padStart(5)}  ${"delivered".padStart(10)}  ${"transfail".padStart(9)}  ${"fail".padStart(6)}`,
    ),
  );
  for (const r of rows) {
    out.push(
      `  ${r.source.padEnd(sw)}  ${r.site.padEnd(tw)}  ${num(r.ready, 8)}  ${num(r.connections, 5)}  ${num(r.delivered, 10)}  ${num(r.transientFailures, 9)}  ${num(r.permanentFailures, 6)}`,
    );
    for (const x of r.suspensions)
      out.push(
        `      ${chalk.red("suspended")} until ${x.expires.replace(/\.\d+Z$/, "Z")} (${x.tsa.join(", ")})  ${chalk.dim(x.reason.slice(0, 80))}`,
      );
  }
  return out;
}

function render(
  ns: string,
  kumods: KumodPodStatus[],
  tsas: TsaPodStatus[],
  proxy: ProxySection,
  readyQueues: SourceSiteRow[],
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
  out.push(...proxyLines(ns, proxy, sink.stats !== undefined));
  out.push(...readyQueueLines(readyQueues, kumods.filter((p) => p.queues).length));
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
function failure(
  kumods: KumodPodStatus[],
  tsas: TsaPodStatus[],
  proxies: ProxyPodStatus[],
  sinkError: string | undefined,
  ns: string,
) {
  const unread = [...kumods, ...tsas, ...proxies].filter((p) => p.error !== undefined);
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
  const [kumodPods, tsaPods, proxyPods, sink] = await Promise.all([
    listPods(ns, "app.kubernetes.io/name=kumod"),
    listPods(ns, "app.kubernetes.io/name=tsa-daemon"),
    listProxyPods(ns),
    sinkStatus(env.sinkUrl),
  ]);
  const [kumodReads, proxyStatuses] = await Promise.all([
    Promise.all(kumodPods.map((p) => kumodStatus(ns, p))),
    Promise.all((proxyPods ?? []).map((p) => proxyStatus(ns, p))),
  ]);
  const tsas = await Promise.all(tsaPods.map((p) => tsaStatus(ns, p)));
  const kumods = kumodReads.map((r) => r.status);
  const proxies = proxyStatuses.map((p) => {
    const counts = sinkCountsFor(p.ip, sink.stats);
    return counts ? { ...p, sink: counts } : p;
  });
  const proxy: ProxySection = {
    deployed: proxyPods !== undefined,
    pods: proxies,
    other_sink_clients: proxyPods ? otherSinkClients(sink.stats, proxies) : [],
  };
  const readyQueues = sourceSiteTable(
    kumodReads.flatMap((r) => (r.samples ? [{ pod: r.status.name, samples: r.samples }] : [])),
    tsas.map((t) => ({ pod: t.name, suspensions: t.suspensions ?? [] })),
  );
  const failed = failure(kumods, tsas, proxies, sink.error, ns);
  const code = failed?.code ?? EXIT.ok;
  const report = {
    namespace: ns,
    exit_code: code,
    kumod: kumods,
    tsa: tsas,
    proxy,
    ready_queues: readyQueues,
    sink: { url: env.sinkUrl, ...sink },
  };
  if (!values.json) process.stdout.write(`${render(ns, kumods, tsas, proxy, readyQueues, sink, env.sinkUrl)}\n`);
  if (failed) throw new CliError(failed.code, failed.message, failed.hint, report);
  if (values.json) process.stdout.write(`${JSON.stringify({ ...report, error: null })}\n`);
  return code;
}

runMain(main);
