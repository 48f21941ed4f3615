import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { CliError, EXIT } from "../exit-codes.ts";
import { classifyKubectlFailure, kubectl, kubectlMessage, kubectlOk, listPods, parsePods } from "../kubectl.ts";
import { getScenario, putScenario, type SinkScenario } from "../sink-api.ts";
import { type Fault, podName, type Workload } from "./registry.ts";

/** Applying a drill's fault to the cluster (kubectl) or the sink (its HTTP API), and undoing a held one. */

export interface FaultContext {
  namespace: string;
  sinkUrl: string;
  timeoutS: number;
  outageS: number | null;
  /** A progress line on stderr. */
  say: (line: string) => void;
  /** The fault is in effect: the runner notes the time and the sink's counts. */
  started: () => Promise<void>;
  /** The window in which the fault acts opens and closes (the sink's counts are read at both ends). */
  windowOpen: () => Promise<void>;
  windowClose: () => Promise<void>;
  /** Aborted on Ctrl-C: a held outage ends early and is undone. */
  signal: AbortSignal;
}

export interface FaultDone {
  target: string;
  restored: string | null;
}

const POLL_MS = 2000;

export function faultTarget(fault: Fault): string {
  switch (fault.kind) {
    case "delete-pod":
      return `pod/${podName(fault.workload, fault.ordinal)}`;
    case "rollout-restart":
    case "scale-outage":
      return `${fault.workload.kind}/${fault.workload.name}`;
    case "sink-scenario":
      return `sink scenario ${fault.scenario}`;
  }
}

export async function applyFault(fault: Fault, ctx: FaultContext): Promise<FaultDone> {
  switch (fault.kind) {
    case "delete-pod":
      return deletePod(fault.workload, podName(fault.workload, fault.ordinal), ctx);
    case "rollout-restart":
      return rolloutRestart(fault.workload, ctx);
    case "scale-outage":
      return scaleOutage(fault.workload, ctx);
    case "sink-scenario":
      return sinkScenario(fault.scenario, ctx);
  }
}

/** Fails clearly when a workload the drill needs is not deployed (a drill for a component not yet in the overlay). */
export async function requireWorkload(namespace: string, w: Workload): Promise<Record<string, unknown>> {
  const r = await kubectl(["get", w.kind, w.name, "-n", namespace, "-o", "json", "--request-timeout=10s"]);
  if (r.exitCode === 0) return JSON.parse(r.stdout) as Record<string, unknown>;
  const { exitCode, hint } = classifyKubectlFailure(r.stderr);
  if (exitCode === EXIT.commandFailed && /NotFound|not found/i.test(r.stderr))
    throw new CliError(
      EXIT.commandFailed,
      `${w.kind}/${w.name} is not in namespace ${namespace}: nothing to drill`,
      "Run `tilt up` (or `tilt ci`) and wait until every resource is ready, then run the drill again.",
    );
  throw new CliError(exitCode, `kubectl get ${w.kind} ${w.name} failed: ${kubectlMessage(r.stderr)}`, hint);
}

interface PodNow {
  uid: string;
  ready: boolean;
}

async function getPod(namespace: string, name: string): Promise<PodNow | undefined> {
  const out = await kubectlOk([
    "get",
    "pod",
    name,
    "-n",
    namespace,
    "-o",
    "json",
    "--ignore-not-found",
    "--request-timeout=10s",
  ]);
  if (out.trim() === "") return undefined;
  const json = JSON.parse(out) as { metadata: { uid: string } };
  const [pod] = parsePods(JSON.stringify({ items: [json] }));
  return { uid: json.metadata.uid, ready: pod?.ready ?? false };
}

const secondsSince = (t: number) => Math.round((performance.now() - t) / 100) / 10;

async function deletePod(w: Workload, pod: string, ctx: FaultContext): Promise<FaultDone> {
  const ns = ctx.namespace;
  const before = await getPod(ns, pod);
  if (!before)
    throw new CliError(
      EXIT.commandFailed,
      `pod/${pod} is not in namespace ${ns}: the ${w.kind} ${w.name} has no pod ${pod}`,
      `See \`kubectl get pods -n ${ns} -l app.kubernetes.io/name=${w.app}\`; wait until ${w.name} is ready.`,
    );
  ctx.say(`kubectl delete pod ${pod} -n ${ns} --wait=false`);
  await kubectlOk(["delete", "pod", pod, "-n", ns, "--wait=false", "--request-timeout=20s"]);
  await ctx.started();
  await ctx.windowOpen();
  const t0 = performance.now();
  let last = "";
  for (;;) {
    const now = await getPod(ns, pod);
    const state = !now ? "gone" : now.uid === before.uid ? "stopping" : now.ready ? "ready" : "starting";
    if (state !== last) ctx.say(`pod/${pod}: ${state} (${secondsSince(t0)} s)`);
    last = state;
    if (state === "ready") break;
    if (performance.now() - t0 > ctx.timeoutS * 1000)
      throw new CliError(
        EXIT.commandFailed,
        `pod/${pod} was not back and Ready within ${ctx.timeoutS} s of its deletion (it is ${state})`,
        `See \`kubectl describe pod ${pod} -n ${ns}\` and its logs; a longer --timeout if it is only slow.`,
      );
    await sleep(POLL_MS);
  }
  await ctx.windowClose();
  return { target: `pod/${pod}`, restored: null };
}

/** kubectl whose output lines are progress lines (rollout status); a failure becomes a CliError. */
async function kubectlStreaming(args: string[], ctx: FaultContext, timeoutMs: number): Promise<void> {
  const child = execa("kubectl", args, { reject: false, stdin: "ignore", timeout: timeoutMs });
  child.stdout?.on("data", (chunk: Buffer) => {
    for (const line of chunk.toString().split("\n")) if (line.trim()) ctx.say(line.trim());
  });
  const r = await child;
  if ((r as { code?: string }).code === "ENOENT")
    throw new CliError(EXIT.kubectlMissing, "kubectl not found on PATH", "Install kubectl 1.32.");
  if (r.exitCode !== 0) {
    const { exitCode, hint } = classifyKubectlFailure(String(r.stderr));
    throw new CliError(exitCode, `kubectl ${args.join(" ")} failed: ${kubectlMessage(String(r.stderr))}`, hint);
  }
}

async function rolloutStatus(w: Workload, ctx: FaultContext): Promise<void> {
  const args = ["rollout", "status", `${w.kind}/${w.name}`, "-n", ctx.namespace, `--timeout=${ctx.timeoutS}s`];
  ctx.say(`kubectl ${args.join(" ")}`);
  try {
    await kubectlStreaming(args, ctx, (ctx.timeoutS + 30) * 1000);
  } catch (err) {
    if (err instanceof CliError && err.exitCode === EXIT.commandFailed)
      throw new CliError(
        EXIT.commandFailed,
        `${w.kind}/${w.name} did not finish rolling out within ${ctx.timeoutS} s: ${err.message}`,
        `See \`kubectl get pods -n ${ctx.namespace} -l app.kubernetes.io/name=${w.app}\`; a longer --timeout if it is only slow.`,
      );
    throw err;
  }
}

async function rolloutRestart(w: Workload, ctx: FaultContext): Promise<FaultDone> {
  const args = ["rollout", "restart", `${w.kind}/${w.name}`, "-n", ctx.namespace];
  ctx.say(`kubectl ${args.join(" ")}`);
  await kubectlOk([...args, "--request-timeout=20s"]);
  await ctx.started();
  await ctx.windowOpen();
  await rolloutStatus(w, ctx);
  await ctx.windowClose();
  return { target: `${w.kind}/${w.name}`, restored: null };
}

/** Waits out a held fault; Ctrl-C (the signal) ends it early. */
async function hold(seconds: number, ctx: FaultContext): Promise<void> {
  ctx.say(`holding the outage for ${seconds} s`);
  try {
    await sleep(seconds * 1000, undefined, { signal: ctx.signal });
  } catch {
    ctx.say("outage cut short (Ctrl-C)");
  }
}

async function scaleOutage(w: Workload, ctx: FaultContext): Promise<FaultDone> {
  const ns = ctx.namespace;
  const obj = (await requireWorkload(ns, w)) as { spec?: { replicas?: number } };
  const replicas = obj.spec?.replicas ?? 1;
  const scale = (to: number) => ["scale", `${w.kind}/${w.name}`, "-n", ns, `--replicas=${to}`];
  ctx.say(`kubectl ${scale(0).join(" ")}   (from ${replicas})`);
  await kubectlOk([...scale(0), "--request-timeout=20s"]);
  await ctx.started();
  let restored: string | null = null;
  try {
    const t0 = performance.now();
    for (;;) {
      const pods = await listPods(ns, `app.kubernetes.io/name=${w.app}`);
      if (pods.length === 0 || ctx.signal.aborted) break;
      if (performance.now() - t0 > ctx.timeoutS * 1000)
        throw new CliError(
          EXIT.commandFailed,
          `${w.kind}/${w.name} still has pods ${ctx.timeoutS} s after scaling to 0: ${pods.map((p) => p.name).join(", ")}`,
          `See \`kubectl get pods -n ${ns} -l app.kubernetes.io/name=${w.app}\`.`,
        );
      await sleep(1000);
    }
    ctx.say(`${w.kind}/${w.name}: no pod left (${secondsSince(t0)} s): outage begins`);
    await ctx.windowOpen();
    await hold(ctx.outageS ?? 0, ctx);
    await ctx.windowClose();
  } finally {
    // Also on a failure and on Ctrl-C: a drill never leaves the cluster without its workload.
    ctx.say(`kubectl ${scale(replicas).join(" ")}`);
    await kubectlOk([...scale(replicas), "--request-timeout=20s"]);
    restored = `${w.kind}/${w.name} scaled back to ${replicas}`;
  }
  await rolloutStatus(w, ctx);
  return { target: `${w.kind}/${w.name} (scaled to 0 for ${ctx.outageS} s)`, restored };
}

async function putWhole(sinkUrl: string, scenario: SinkScenario): Promise<void> {
  const res = await fetch(new URL("/api/scenario", sinkUrl), {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(scenario.rules),
    signal: AbortSignal.timeout(5000),
  });
  if (!res.ok) throw new Error(`sink answered HTTP ${res.status}: ${(await res.text()).slice(0, 300)}`);
}

async function sinkScenario(name: string, ctx: FaultContext): Promise<FaultDone> {
  const previous = (await getScenario(ctx.sinkUrl)) as SinkScenario & { custom?: boolean };
  if (!previous.available.includes(name))
    throw new CliError(
      EXIT.unknownScenario,
      `the sink at ${ctx.sinkUrl} has no scenario "${name}"`,
      `Available: ${previous.available.join(", ")}. Deploy the current sink/config/sink.yaml (tilt up).`,
    );
  ctx.say(`sink scenario: ${previous.name} -> ${name} (PUT ${ctx.sinkUrl}/api/scenario)`);
  await putScenario(ctx.sinkUrl, name);
  await ctx.started();
  await ctx.windowOpen();
  const restoreWith = previous.custom ? `its custom rules (${previous.name})` : previous.name;
  // hold() ends early on Ctrl-C and the window readings never throw: the restore below always runs.
  await hold(ctx.outageS ?? 0, ctx);
  await ctx.windowClose();
  ctx.say(`sink scenario: ${name} -> ${restoreWith}`);
  try {
    if (previous.custom) await putWhole(ctx.sinkUrl, previous);
    else await putScenario(ctx.sinkUrl, previous.name);
  } catch (err) {
    throw new CliError(
      EXIT.sinkUnreachable,
      `could not restore the sink's scenario ${restoreWith}: ${(err as Error).message}`,
      `The sink is still in "${name}": run \`npm run scenario -- ${previous.name}\` once it answers.`,
    );
  }
  return { target: `sink scenario ${name} for ${ctx.outageS} s`, restored: `sink scenario ${restoreWith}` };
}
