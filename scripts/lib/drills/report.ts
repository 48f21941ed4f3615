import { EXIT, type ExitCode } from "../exit-codes.ts";
import type { Summary } from "../inject-summary.ts";
import { formatDuration } from "../pacing.ts";
import type { SinkDelta } from "../sink-api.ts";
import type { DrillPlan } from "./plan.ts";
import type { Drill } from "./registry.ts";

/** Pure: the drill's verdict from the injector's --verify accounting and what the fault did, and its rendering. */

export type Verdict = "nothing-lost" | "incomplete" | "load-failed" | "fault-failed" | "not-proven" | "interrupted";

export interface Problem {
  message: string;
  hint: string;
}

export interface FaultRecord {
  /** What was hit: pod/kumod-0, statefulset/kumod, deployment/dragonfly, sink scenario outage. */
  target: string;
  /** Seconds after the injector's pod started running. */
  started_s: number | null;
  /** When the fault was over: the pod(s) Ready again, the replicas or the scenario restored. */
  ended_s: number | null;
  /** What was put back after a held fault ("replicas 1", "scenario directives"). */
  restored: string | null;
  /** Why the fault could not be applied or its workload did not come back, with the exit code that says so. */
  error: (Problem & { exit_code: ExitCode }) | null;
}

export interface DrillObservations {
  interrupted: boolean;
  fault: FaultRecord;
  /** What the sink settled between the fault's start and end. */
  duringFault: (SinkDelta & { window_s: number }) | null;
  /** Container restarts of kumod pods during the drill (a deleted pod's new container starts at 0). */
  kumodRestarts: number | null;
  inject: { exitCode: ExitCode; summary: Summary | null; error: Problem | null };
}

export interface DrillReport {
  drill: string;
  title: string;
  namespace: string;
  verdict: Verdict;
  /** Every recipient kumod accepted was delivered or bounced at the sink, with the fault inside the load. */
  nothing_lost: boolean;
  exit_code: ExitCode;
  promise: { text: string; sources: string[] };
  plan: { count: number; rate: number; load_s: number; fault_at_s: number; outage_s: number | null; timeout_s: number };
  fault: FaultRecord;
  during_fault: { window_s: number; delivered: number; bounced: number; deferral_attempts: number } | null;
  /** For drills that ask it (Dragonfly, the sink): did the sink receive anything while the fault lasted? */
  delivery_during_fault: "kept-delivering" | "paused" | null;
  kumod_restarts: number | null;
  accounting: {
    accepted: number;
    failed: number;
    unknown: number;
    maybe_duplicated: number;
    delivered: number;
    bounced: number;
    deferral_attempts: number;
    complete: boolean;
  } | null;
  inject: { exit_code: ExitCode; elapsed_s: number | null; error: Problem | null };
  error: Problem | null;
}

const n = (x: number) => x.toLocaleString("en-US");

/** Pure: the verdict, its exit code and the error it reports. The first cause in this order wins. */
export function decide(obs: DrillObservations): { verdict: Verdict; exitCode: ExitCode; error: Problem | null } {
  const { summary, exitCode: injectExit } = obs.inject;
  if (obs.interrupted || injectExit === EXIT.interrupted)
    return {
      verdict: "interrupted",
      exitCode: EXIT.interrupted,
      error: {
        message: "interrupted (Ctrl-C): the drill proved nothing",
        hint: "A held fault was undone (see restored); the injector's Job was stopped and deleted.",
      },
    };
  if (obs.fault.error) {
    const { message, hint } = obs.fault.error;
    return { verdict: "fault-failed", exitCode: obs.fault.error.exit_code, error: { message, hint } };
  }
  if (injectExit === EXIT.verifyIncomplete && summary?.verify) {
    const v = summary.verify;
    const missing = v.expected - v.delivered - v.bounced;
    return {
      verdict: "incomplete",
      exitCode: EXIT.verifyIncomplete,
      error: {
        message: `${n(missing)} of ${n(v.expected)} accepted recipients did not reach the sink within ${v.timeout_s} s after the load: lost, or still queued`,
        hint:
          "Run `npm run status` (kumod queues, TSA suspensions): queued mail is still coming (a longer --timeout), " +
          "an empty queue with recipients missing is a loss worth reporting.",
      },
    };
  }
  if (injectExit !== EXIT.ok)
    return {
      verdict: "load-failed",
      exitCode: injectExit,
      error: obs.inject.error ?? {
        message: `the injector ended with exit code ${injectExit}`,
        hint: "See its lines above (prefixed inject|).",
      },
    };
  const started = obs.fault.started_s;
  if (summary && (started === null || started >= summary.elapsed_s))
    return {
      verdict: "not-proven",
      exitCode: EXIT.notProven,
      error: {
        message: `the load ended (${summary.elapsed_s} s) before the fault ${started === null ? "was due" : `started (${started} s)`}: every recipient arrived, but that proves nothing about the fault`,
        hint: "Give the load more time: raise --count, lower --rate or --fault-at.",
      },
    };
  return { verdict: "nothing-lost", exitCode: EXIT.ok, error: null };
}

/** The load and timing of a plan, in the snake_case of every tool's JSON (the report's and --dry-run's). */
export function planNumbers(plan: DrillPlan) {
  return {
    count: plan.count,
    rate: plan.rate,
    load_s: plan.loadS,
    fault_at_s: plan.faultAtS,
    outage_s: plan.outageS,
    timeout_s: plan.timeoutS,
  };
}

export function buildReport(drill: Drill, plan: DrillPlan, obs: DrillObservations): DrillReport {
  const { verdict, exitCode, error } = decide(obs);
  const s = obs.inject.summary;
  const d = obs.duringFault;
  return {
    drill: drill.name,
    title: drill.title,
    namespace: plan.namespace,
    verdict,
    nothing_lost: verdict === "nothing-lost",
    exit_code: exitCode,
    promise: drill.promise,
    plan: planNumbers(plan),
    fault: obs.fault,
    during_fault: d
      ? { window_s: d.window_s, delivered: d.delivered, bounced: d.bounced, deferral_attempts: d.deferralAttempts }
      : null,
    delivery_during_fault:
      drill.asksDeliveryDuringFault && d ? (d.delivered + d.bounced > 0 ? "kept-delivering" : "paused") : null,
    kumod_restarts: obs.kumodRestarts,
    accounting: s
      ? {
          accepted: s.recipients.accepted,
          failed: s.recipients.failed,
          unknown: s.recipients.unknown,
          maybe_duplicated: s.recipients.maybe_duplicated,
          delivered: s.verify?.delivered ?? 0,
          bounced: s.verify?.bounced ?? 0,
          deferral_attempts: s.verify?.deferral_attempts ?? 0,
          complete: s.verify?.complete ?? false,
        }
      : null,
    inject: { exit_code: obs.inject.exitCode, elapsed_s: s?.elapsed_s ?? null, error: obs.inject.error },
    error,
  };
}

const HEADLINE: Record<Verdict, string> = {
  "nothing-lost": "NOTHING LOST",
  incomplete: "INCOMPLETE (accepted mail missing at the sink)",
  "load-failed": "LOAD FAILED",
  "fault-failed": "FAULT FAILED",
  "not-proven": "NOT PROVEN (the fault came after the load)",
  interrupted: "INTERRUPTED",
};

const secs = (s: number | null) => (s === null ? "?" : formatDuration(s * 1000));

export function formatReport(r: DrillReport): string {
  const lines = [`drill ${r.drill}: ${r.title}: ${HEADLINE[r.verdict]}`];
  const p = r.plan;
  lines.push(
    `  load        ${n(p.count)} recipients at ${n(p.rate)}/s (${secs(p.load_s)}) from a Job in ${r.namespace}`,
  );
  const f = r.fault;
  if (f.started_s === null) lines.push(`  fault       ${f.target}: not started`);
  else {
    const end =
      f.ended_s === null
        ? "did not end cleanly"
        : `over ${secs(f.ended_s - f.started_s)} later (at ${secs(f.ended_s)})`;
    lines.push(`  fault       ${f.target} at ${secs(f.started_s)}, ${end}`);
  }
  if (f.restored) lines.push(`  restored    ${f.restored}`);
  const d = r.during_fault;
  if (d) {
    const kept = r.delivery_during_fault === null ? "" : `: ${r.delivery_during_fault}`;
    lines.push(
      `  meanwhile   the sink settled ${n(d.delivered + d.bounced)} recipients in the ${secs(d.window_s)} window (delivered ${n(d.delivered)}, bounced ${n(d.bounced)}, deferral attempts ${n(d.deferral_attempts)})${kept}`,
    );
  }
  const a = r.accounting;
  if (a) {
    const extra = [
      a.unknown > 0 ? `${n(a.unknown)} unknown (connection lost after sending)` : "",
      a.maybe_duplicated > 0 ? `${n(a.maybe_duplicated)} maybe twice` : "",
    ].filter(Boolean);
    lines.push(
      `  accounting  ${n(a.accepted)} accepted, ${n(a.failed)} failed${extra.length ? `, ${extra.join(", ")}` : ""}`,
    );
    lines.push(
      `  at the sink ${n(a.delivered)} delivered + ${n(a.bounced)} bounced = ${n(a.delivered + a.bounced)} of ${n(a.accepted)} accepted${a.complete ? "" : " (INCOMPLETE)"}, ${n(a.deferral_attempts)} deferral attempts`,
    );
  }
  if (r.kumod_restarts !== null) lines.push(`  kumod       ${n(r.kumod_restarts)} container restarts during the drill`);
  lines.push(`  promise     ${r.promise.text}`);
  lines.push(`              (KumoCorp/kumomta ${r.promise.sources.join(", ")})`);
  return lines.join("\n");
}
