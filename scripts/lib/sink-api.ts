/** Client for the sink's HTTP API (docs/sink.md, "HTTP API (port 8025)"). */

export interface SinkCounts {
  accepted: number;
  deferred: number;
  bounced: number;
}

export interface SinkStats {
  scenario: string;
  started_at: string;
  connections: { active: number; total: number; tls: number };
  messages: SinkCounts;
  recipients: SinkCounts;
  bytes: { accepted: number };
  replies: Record<string, number>;
  faults: Record<string, number>;
  domains: Record<string, SinkCounts>;
  /** Recipients by the provider site of the port kumod connected to ("other": SINK_SMTP_PORT); absent on older sinks. */
  sites?: Record<string, SinkSiteCounts>;
  /** By client IP, i.e. by sending IP (a KumoProxy pod's); over SINK_MAX_CLIENTS IPs the rest count as "_other". */
  clients?: Record<string, SinkClientCounts & { sites: Record<string, SinkClientCounts> }>;
  /** The IP each `clients: one` rule picked, null until one has reached it. */
  chosen_clients?: Record<string, string | null>;
}

export interface SinkSiteCounts extends SinkCounts {
  connections: number;
}

export interface SinkClientCounts {
  connections: number;
  messages: SinkCounts;
  recipients: SinkCounts;
}

export interface SinkScenario {
  name: string;
  available: string[];
  rules?: unknown;
  chosen_clients?: Record<string, string | null>;
}

export class SinkUnreachableError extends Error {}

/** fetch refused the URL's port outright (a Fetch standard "bad port", e.g. 6000 for X11); nothing was attempted. */
export class SinkBadPortError extends Error {
  constructor(readonly url: string) {
    super(
      `fetch refuses to connect to port ${new URL(url).port} of ${url}: it is one of the "bad ports" the Fetch standard blocks in every HTTP client`,
    );
  }
}

export class SinkHttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super(`sink answered HTTP ${status}: ${body.trim().slice(0, 300)}`);
  }
}

/** The sink answers from memory at once; longer than this means something else holds the port, or it is stuck. */
const SINK_TIMEOUT_MS = 5000;

async function call(base: string, path: string, init: RequestInit = {}): Promise<unknown> {
  const url = new URL(path, base);
  let res: globalThis.Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(SINK_TIMEOUT_MS) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    if (cause?.message === "bad port") throw new SinkBadPortError(base);
    const reason =
      (err as Error).name === "TimeoutError"
        ? `no answer within ${SINK_TIMEOUT_MS / 1000} s`
        : (cause?.code ?? cause?.message ?? (err as Error).message);
    throw new SinkUnreachableError(`cannot reach the sink at ${base} (${reason})`);
  }
  const text = await res.text();
  if (!res.ok) throw new SinkHttpError(res.status, text);
  try {
    return JSON.parse(text);
  } catch {
    throw new SinkHttpError(res.status, `not JSON: ${text.slice(0, 200)}`);
  }
}

export async function getSinkStats(base: string): Promise<SinkStats> {
  return (await call(base, "/api/stats")) as SinkStats;
}

export async function getScenario(base: string): Promise<SinkScenario> {
  return (await call(base, "/api/scenario")) as SinkScenario;
}

export async function putScenario(base: string, name: string): Promise<SinkScenario> {
  return (await call(base, "/api/scenario", {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name }),
  })) as SinkScenario;
}

/** Pure: what happened at the sink between two snapshots. */
export interface SinkDelta {
  delivered: number;
  bounced: number;
  deferralAttempts: number;
}

export function sinkDelta(before: SinkStats, after: SinkStats): SinkDelta {
  // Counters restart with the sink process; after a restart everything counted so far is new.
  if (after.started_at !== before.started_at) {
    return {
      delivered: after.recipients.accepted,
      bounced: after.recipients.bounced,
      deferralAttempts: after.recipients.deferred,
    };
  }
  return {
    delivered: after.recipients.accepted - before.recipients.accepted,
    bounced: after.recipients.bounced - before.recipients.bounced,
    deferralAttempts: after.recipients.deferred - before.recipients.deferred,
  };
}

/** Recipients reach a final state at the sink by being accepted or bounced; deferrals are retried by kumod. */
export function settled(delta: SinkDelta): number {
  return delta.delivered + delta.bounced;
}
