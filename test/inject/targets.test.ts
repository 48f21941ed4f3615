import { describe, expect, it } from "vitest";
import { parseInjectArgs, splitUrls } from "../../scripts/lib/inject-args.ts";
import { isRestartSign } from "../../scripts/lib/inject-errors.ts";
import { TargetSet } from "../../scripts/lib/inject-targets.ts";

const REFUSED = { reason: "ECONNREFUSED", restart: true };

describe("several kumods in --url", () => {
  it("takes a comma-separated list and refuses empty or repeated entries", () => {
    expect(parseInjectArgs(["--url", "http://a:8000, http://b:8000"]).urls).toEqual(["http://a:8000", "http://b:8000"]);
    expect(() => splitUrls("http://a:8000,")).toThrow(/empty entry/);
    expect(() => splitUrls("http://a:8000,http://a:8000")).toThrow(/lists http:\/\/a:8000 twice/);
    expect(() => parseInjectArgs(["--url", "http://a:8000,https://b"])).toThrow(/"https:\/\/b" does not start/);
  });

  it("sends to each in turn while all answer", () => {
    const set = new TargetSet(["a", "b", "c"]);
    const order = Array.from({ length: 6 }, () => set.pick(0).target.counts.url);
    expect(order).toEqual(["a", "b", "c", "a", "b", "c"]);
  });

  it("skips a kumod that is down until its backoff is over, then probes it, and takes it back when it answers", () => {
    const set = new TargetSet(["a", "b"]);
    const a = set.pick(0).target;
    expect(set.markDown(a, { reason: "503 Error: shutting down", restart: true }, 0, 1)).toBe(true);
    // Backing off for 200 ms: every batch goes to b meanwhile, without waiting.
    for (const now of [0, 50, 199])
      expect(set.pick(now)).toMatchObject({ target: { counts: { url: "b" } }, waitMs: 0 });
    // Other requests in flight failing at the same moment do not lengthen the backoff.
    expect(set.markDown(a, REFUSED, 10, 1)).toBe(false);
    expect(a.retryAt).toBe(200);
    expect(set.downTargets()).toEqual([{ url: "a", since: 0, ...REFUSED }]);
    // Due again: the next batch is the probe. It fails: the backoff doubles.
    const probe = [set.pick(200), set.pick(200)].find((p) => p.target === a);
    expect(probe?.waitMs).toBe(0);
    set.markDown(a, REFUSED, 200, 1);
    expect(a.retryAt).toBe(600);
    expect(set.markUp(a, 700)).toBe(700);
    expect(set.downTargets()).toEqual([]);
    expect(set.markUp(a, 800)).toBeUndefined();
  });

  it("probes a restarting kumod at least every 2 s, one shedding load every 5 s", () => {
    const gaps = (restart: boolean) => {
      const set = new TargetSet(["a"]);
      const a = set.pick(0).target;
      const out: number[] = [];
      for (let i = 0, now = 0; i < 8; i++, now = a.retryAt) {
        set.markDown(a, { reason: "x", restart }, now, 1);
        out.push(a.retryAt - now);
      }
      return out;
    };
    expect(gaps(true)).toEqual([200, 400, 800, 1600, 2000, 2000, 2000, 2000]);
    expect(gaps(false)).toEqual([200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
  });

  it("when every kumod is down, waits for the one due first", () => {
    const set = new TargetSet(["a", "b"]);
    const [a, b] = set.targets;
    if (!a || !b) throw new Error("two targets");
    set.markDown(a, REFUSED, 0, 1);
    set.markDown(b, REFUSED, 100, 1);
    expect(set.pick(150)).toMatchObject({ target: a, waitMs: 50 });
  });
});

describe("restart signs", () => {
  it("are kumod's shutdown and spool-startup 503s and a refused or broken connection", () => {
    expect(isRestartSign(503, "Error: shutting down")).toBe(true);
    expect(isRestartSign(503, "Error: waiting for spool startup")).toBe(true);
    expect(isRestartSign(undefined, "ECONNREFUSED")).toBe(true);
    expect(isRestartSign(undefined, "ECONNRESET")).toBe(true);
    // Overload and a stuck kumod keep the --retries limit.
    expect(isRestartSign(503, "Error: load shedding")).toBe(false);
    expect(isRestartSign(503, "Error: disk is too full")).toBe(false);
    expect(isRestartSign(undefined, "ETIMEDOUT")).toBe(false);
  });

  it("are ridden out for 2 minutes by default; --restart-budget changes it, 0 gives up at once", () => {
    expect(parseInjectArgs([]).restartBudgetMs).toBe(120_000);
    expect(parseInjectArgs(["--restart-budget", "5s"]).restartBudgetMs).toBe(5000);
    expect(parseInjectArgs(["--restart-budget", "0"]).restartBudgetMs).toBe(0);
    expect(() => parseInjectArgs(["--restart-budget", "soon"])).toThrow(/--restart-budget must be a duration/);
  });
});
