import { backoffMs, RESTART_BACKOFF_CAP_MS } from "./inject-errors.ts";

/** What the summary says about one kumod the run sent to. */
export interface TargetCounts {
  url: string;
  /** Attempts sent to this target; `unavailable` of them got a 503 or no answer (refused, reset, timed out). */
  requests: { sent: number; ok: number; unavailable: number };
  /** From this target's 200 replies only (success_count, fail_count). */
  recipients: { accepted: number; failed: number };
}

/** Why an attempt failed: "503 Error: shutting down", "ECONNREFUSED"; and whether that is a sign of a restart. */
export interface Unavailable {
  reason: string;
  restart: boolean;
}

export interface Target {
  readonly index: number;
  readonly counts: TargetCounts;
  /** Whether it has answered with any HTTP status in this run (a refusal before that is a wrong URL, not a restart). */
  answered: boolean;
  /** Set while it is unavailable: since when, and the latest reason. */
  down?: { since: number } & Unavailable;
  /** No attempt goes to it before this time (performance.now() clock). */
  retryAt: number;
  /** Consecutive failed probes, for the backoff. */
  failures: number;
}

/**
 * The kumods a run sends to, in turn. A target that answered 503 or could not be reached backs off (exponential, with
 * jitter) and the next batch goes to the next target that is not backing off; when every target backs off, the
 * caller waits for the one that is due first. A target comes back as soon as one of its answers is not a 503: the
 * batches themselves are the probes, which costs nothing since a refused or 503'd request was not accepted.
 * Pure: the clock and the randomness are passed in.
 */
export class TargetSet {
  readonly targets: Target[];
  private cursor = 0;

  constructor(urls: readonly string[]) {
    this.targets = urls.map((url, index) => ({
      index,
      counts: { url, requests: { sent: 0, ok: 0, unavailable: 0 }, recipients: { accepted: 0, failed: 0 } },
      answered: false,
      retryAt: 0,
      failures: 0,
    }));
  }

  /** The target for the next attempt, and how long to wait before sending to it (0 unless every target backs off). */
  pick(now: number): { target: Target; waitMs: number } {
    const n = this.targets.length;
    for (let i = 0; i < n; i++) {
      const t = this.targets[(this.cursor + i) % n] as Target;
      if (t.retryAt <= now) {
        this.cursor = (t.index + 1) % n;
        return { target: t, waitMs: 0 };
      }
    }
    const soonest = this.targets.reduce((a, b) => (b.retryAt < a.retryAt ? b : a));
    this.cursor = (soonest.index + 1) % n;
    // Whoever waits for it sends then; the others in the meantime pick it again and wait as long.
    return { target: soonest, waitMs: soonest.retryAt - now };
  }

  /**
   * An attempt to `t` got a 503 or no connection. Only a failed probe (an attempt sent once the backoff was over)
   * lengthens the backoff: the other requests in flight when a pod goes away fail together and count once.
   * Returns true when the target has just gone down (for a "waiting for kumod" line).
   */
  markDown(t: Target, why: Unavailable, now: number, random: number): boolean {
    const wasUp = t.down === undefined;
    t.down = { since: t.down?.since ?? now, ...why };
    if (t.retryAt <= now) {
      t.retryAt = now + backoffMs(t.failures, random, why.restart ? RESTART_BACKOFF_CAP_MS : undefined);
      t.failures++;
    }
    return wasUp;
  }

  /** `t` answered with something other than a 503; returns how long it was down, if it was. */
  markUp(t: Target, now: number): number | undefined {
    const down = t.down;
    t.down = undefined;
    t.failures = 0;
    t.retryAt = 0;
    return down === undefined ? undefined : now - down.since;
  }

  /** The targets that are unavailable now. */
  downTargets(): ({ url: string; since: number } & Unavailable)[] {
    return this.targets.flatMap((t) => (t.down ? [{ url: t.counts.url, ...t.down }] : []));
  }
}
