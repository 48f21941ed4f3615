/** Pure parts of `npm run doctor`: version comparison, the result model and its rendering. */

export type CheckState = "pass" | "fail" | "skip";

export interface CheckResult {
  name: string;
  state: CheckState;
  detail: string;
  /** What to do about it; empty when passing. */
  fix: string;
}

/** True when `version` (e.g. v20.20.2) is at least `minimum` (e.g. 20.18). */
export function versionAtLeast(version: string, minimum: string): boolean {
  const parse = (v: string) => (v.replace(/^v/, "").match(/\d+/g) ?? []).map(Number);
  const a = parse(version);
  const b = parse(minimum);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i] ?? 0;
    const y = b[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}

/** Oldest Tilt the Tiltfile accepts (its `version_settings` constraint; test/tilt keeps the two equal). */
export const MIN_TILT = "0.33.0";
export const TILT_INSTALL_URL = "https://docs.tilt.dev/install.html";

/**
 * Pure: what is wrong with the tilt whose `tilt version` printed `stamp` (a release: "v0.37.6, built 2025-11-20"),
 * or undefined. A build without the release's version stamp says "-dev" and expects a webpack dev server in a Tilt
 * checkout for its UI, so `tilt up` fails: that is how `go install`/`go build` builds look, like the tests' one.
 */
export function tiltProblem(stamp: string, minimum: string): string | undefined {
  const m = /^v(\d+\.\d+\.\d+)(-dev)?,/.exec(stamp.trim());
  if (!m) return `unrecognised \`tilt version\` output: ${stamp.trim()}`;
  const version = m[1] as string;
  if (m[2]) return `tilt v${version}-dev is a source build without the web UI: \`tilt up\` cannot serve it`;
  if (!versionAtLeast(version, minimum)) return `tilt v${version} is older than ${minimum}, the Tiltfile's minimum`;
  return undefined;
}

export function allPassed(results: readonly CheckResult[]): boolean {
  return results.length > 0 && results.every((r) => r.state === "pass");
}

export function formatChecks(results: readonly CheckResult[], mark: (s: CheckState) => string): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${mark(r.state)} ${r.name}: ${r.detail}`);
    if (r.state !== "pass" && r.fix) lines.push(`       fix: ${r.fix}`);
  }
  const failed = results.filter((r) => r.state === "fail").length;
  const skipped = results.filter((r) => r.state === "skip").length;
  lines.push(
    failed + skipped === 0
      ? `all ${results.length} checks passed`
      : `${failed} failed, ${skipped} skipped (they depend on a failed check), ${results.length - failed - skipped} passed`,
  );
  return lines.join("\n");
}

/** Workloads the cluster must run, by their app.kubernetes.io/name label (k8s/base). */
export const WORKLOADS = ["kumod", "tsa-daemon", "dragonfly", "sink"] as const;
