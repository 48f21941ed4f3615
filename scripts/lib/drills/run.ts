import { resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { execa } from "execa";
import { REPO_ROOT } from "../env.ts";
import { CliError, EXIT, type ExitCode } from "../exit-codes.ts";
import { podState } from "../inject-job.ts";
import type { Summary } from "../inject-summary.ts";
import { kubectlOk, listPods } from "../kubectl.ts";
import { getSinkStats, type SinkStats, sinkDelta } from "../sink-api.ts";
import { applyFault, faultTarget } from "./faults.ts";
import type { DrillPlan } from "./plan.ts";
import type { Drill } from "./registry.ts";
import type { DrillObservations, FaultRecord, Problem } from "./report.ts";

/**
 * Runs one drill: the in-cluster injector (`npm run inject -- --in-cluster ... --verify --json`, a child process) as
 * the steady load, the fault at its time once the injector's pod runs, the sink's counts around the fault, and the
 * injector's accounting at the end.
 */

export interface RunHooks {
  /** A progress line (stderr). */
  say: (line: string) => void;
}

/** Pure: the injector's last stdout line, its summary (or {exit_code, error} when it could not run). */
export function parseInjectOutput(stdout: string): { summary: Summary | null; error: Problem | null } {
  const line = stdout.trim().split("\n").at(-1) ?? "";
  try {
    const json = JSON.parse(line) as Partial<Summary> & { error?: Problem | null };
    const summary = json.recipients ? (json as Summary) : null;
    return { summary, error: json.error ?? null };
  } catch {
    return { summary: null, error: null };
  }
}

/** Pure: the Job's name from the in-cluster injector's "job/NAME in namespace ..." line. */
export function jobNameOf(line: string): string | undefined {
  return /^job\/(\S+) in namespace /.exec(line)?.[1];
}

/** Container restarts per kumod pod, to count the ones that happened during the drill. */
async function kumodRestarts(namespace: string): Promise<Map<string, number> | undefined> {
  try {
    const pods = await listPods(namespace, "app.kubernetes.io/name=kumod");
    return new Map(pods.map((p) => [p.name, p.restarts]));
  } catch {
    return undefined;
  }
}

/** Pure: restarts that happened between two readings (a recreated pod's counter starts again at 0). */
export function restartsBetween(before: Map<string, number>, after: Map<string, number>): number {
  let sum = 0;
  for (const [pod, n] of after) sum += Math.max(0, n - (before.get(pod) ?? 0));
  return sum;
}

export async function runDrill(drill: Drill, plan: DrillPlan, hooks: RunHooks): Promise<DrillObservations> {
  const ns = plan.namespace;
  const restartsBefore = await kumodRestarts(ns);
  const abort = new AbortController();
  let interrupted = false;
  const child = execa(
    process.execPath,
    ["--import", "tsx", resolve(REPO_ROOT, "scripts/inject.ts"), ...plan.injectArgs],
    {
      cwd: REPO_ROOT,
      reject: false,
      stdin: "ignore",
      // Its own process group: Ctrl-C reaches the drill, which passes it on once (a second one deletes the Job).
      detached: true,
      env: { KUMOMTA_NAMESPACE: ns },
    },
  );
  const onSigint = () => {
    if (!interrupted)
      hooks.say("Ctrl-C: undoing the fault and stopping the injector (Ctrl-C again: delete its Job now)");
    interrupted = true;
    abort.abort();
    child.kill("SIGINT");
  };
  process.on("SIGINT", onSigint);

  let job: string | undefined;
  let rest = "";
  child.stderr?.on("data", (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) {
      job ??= jobNameOf(line);
      hooks.say(`inject| ${line}`);
    }
  });
  let ended = false;
  const done = child.then((r) => {
    ended = true;
    return r;
  });

  const fault: FaultRecord = {
    target: faultTarget(drill.fault),
    started_s: null,
    ended_s: null,
    restored: null,
    error: null,
  };
  let duringFault: DrillObservations["duringFault"] = null;
  // Whatever happens to the fault, the injector finishes (or is stopped) and its accounting is read afterwards.
  {
    const t0 = await injectorRunning(
      ns,
      () => job,
      () => ended,
      hooks,
    );
    if (t0 !== undefined && !interrupted) {
      const at = (s: number) => Math.round(s * 10) / 10;
      const elapsed = () => at((performance.now() - t0) / 1000);
      hooks.say(`injector running; the fault comes at ${plan.faultAtS} s (load ${plan.loadS} s)`);
      const due = t0 + plan.faultAtS * 1000;
      while (performance.now() < due && !ended && !interrupted) await sleep(Math.min(250, due - performance.now()));
      if (ended) hooks.say("the injector ended before the fault was due: the fault is not applied");
      else if (!interrupted) {
        let windowStart: { stats: SinkStats | undefined; at: number } | undefined;
        const readSink = async () => {
          try {
            return await getSinkStats(plan.sinkUrl);
          } catch (err) {
            hooks.say(`sink counts unavailable: ${(err as Error).message}`);
            return undefined;
          }
        };
        try {
          const r = await applyFault(drill.fault, {
            namespace: ns,
            sinkUrl: plan.sinkUrl,
            timeoutS: plan.timeoutS,
            outageS: plan.outageS,
            signal: abort.signal,
            say: (line) => hooks.say(`fault| ${line}`),
            started: async () => {
              fault.started_s = elapsed();
            },
            windowOpen: async () => {
              windowStart = { stats: await readSink(), at: performance.now() };
            },
            windowClose: async () => {
              const after = await readSink();
              if (windowStart?.stats && after)
                duringFault = {
                  ...sinkDelta(windowStart.stats, after),
                  window_s: at((performance.now() - windowStart.at) / 1000),
                };
            },
          });
          fault.target = r.target;
          fault.restored = r.restored;
          fault.ended_s = elapsed();
          hooks.say(
            `fault over at ${fault.ended_s} s; waiting for the injector's verify (every accepted recipient at the sink)`,
          );
        } catch (err) {
          const e =
            err instanceof CliError
              ? err
              : new CliError(EXIT.commandFailed, `the fault failed: ${(err as Error).message}`, "See the lines above.");
          fault.error = { message: e.message, hint: e.hint ?? "", exit_code: e.exitCode };
          hooks.say(`fault failed: ${e.message}; waiting for the injector's accounting`);
        }
      }
    }
  }
  const r = await done;
  process.off("SIGINT", onSigint);
  const { summary, error } = parseInjectOutput(String(r.stdout));
  const restartsAfter = restartsBefore ? await kumodRestarts(ns) : undefined;
  return {
    interrupted,
    fault,
    duringFault,
    kumodRestarts: restartsBefore && restartsAfter ? restartsBetween(restartsBefore, restartsAfter) : null,
    inject: { exitCode: (r.exitCode ?? EXIT.internal) as ExitCode, summary, error },
  };
}

/** Waits for the injector's Job pod to run; undefined when the injector ended before (it could not start). */
async function injectorRunning(
  namespace: string,
  job: () => string | undefined,
  ended: () => boolean,
  hooks: RunHooks,
): Promise<number | undefined> {
  while (!ended()) {
    const name = job();
    if (name !== undefined) {
      try {
        const s = podState(await kubectlOk(["get", "pods", "-n", namespace, "-l", `job-name=${name}`, "-o", "json"]));
        if (s.state === "running") return performance.now();
        if (s.state === "terminated") {
          hooks.say(`job/${name}: the injector's pod ended before the drill saw it run`);
          return undefined;
        }
      } catch {
        // The injector itself reports a Job that cannot start; keep looking until it ends.
      }
    }
    await sleep(500);
  }
  return undefined;
}
