/**
 * The tilt .ci/install-tools.sh builds from source evaluates Tiltfiles for the tests but cannot `tilt up` (no web
 * assets). Users install Tilt the official way; `npm run doctor` must say so when the tilt on PATH is a source build.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { afterAll, describe, expect, it } from "vitest";
import { MIN_TILT, TILT_INSTALL_URL, tiltProblem } from "../../scripts/lib/doctor-checks.ts";
import { repoRoot, toolBin } from "./tilt-result.ts";

const tmp = mkdtempSync(path.join(tmpdir(), "tilt-for-users-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

interface Check {
  name: string;
  state: string;
  detail: string;
  fix: string;
}

/** `npm run doctor -- --json` with PATH as given and no cluster, returning its tilt check. */
async function doctorTiltCheck(PATH: string): Promise<Check | undefined> {
  const r = await execa("node", ["--import", "tsx", "scripts/doctor.ts", "--json"], {
    cwd: repoRoot,
    reject: false,
    stdin: "ignore",
    env: {
      PATH,
      KUBECONFIG: path.join(tmp, "no-kubeconfig"),
      KUMO_HTTP_URL: "http://127.0.0.1:9",
      SINK_HTTP_URL: "http://127.0.0.1:9",
      TSA_HTTP_URL: "http://127.0.0.1:9",
    },
  });
  expect(r.exitCode, r.stderr).toBe(16);
  return (JSON.parse(r.stdout) as { checks: Check[] }).checks.find((c) => c.name === "tilt");
}

describe("tilt for users and tilt for tests", () => {
  it("the test build reports itself as a -dev build, which is what doctor recognises", async () => {
    const r = await execa(toolBin("tilt-tiltfile-eval"), ["version"]);
    expect(r.stdout).toMatch(/^v\d+\.\d+\.\d+-dev, built /);
    expect(tiltProblem(r.stdout, MIN_TILT)).toContain("source build without the web UI");
  });

  it("doctor fails a source-built tilt on PATH and points to the official install", async () => {
    const bin = path.join(tmp, "dev-tilt");
    mkdirSync(bin);
    symlinkSync(toolBin("tilt-tiltfile-eval"), path.join(bin, "tilt"));
    const tilt = await doctorTiltCheck(`${bin}${path.delimiter}${process.env.PATH}`);
    expect(tilt).toMatchObject({ state: "fail" });
    expect(tilt?.detail).toMatch(/-dev is a source build without the web UI/);
    expect(tilt?.fix).toContain(TILT_INSTALL_URL);
    expect(tilt?.fix).not.toContain("install-tools");
  });

  it("doctor fails without tilt on PATH, with the install link, and never looks in .tools/bin", async () => {
    const bin = path.join(tmp, "node-only");
    mkdirSync(bin);
    symlinkSync(process.execPath, path.join(bin, "node"));
    const tilt = await doctorTiltCheck(bin);
    expect(tilt).toMatchObject({ state: "fail", detail: "not found on PATH" });
    expect(tilt?.fix).toContain(TILT_INSTALL_URL);
  });

  it("accepts release builds at or above the Tiltfile's minimum, which doctor states", () => {
    expect(readFileSync(path.join(repoRoot, "Tiltfile"), "utf8")).toContain(
      `version_settings(constraint = ">=${MIN_TILT}")`,
    );
    expect(tiltProblem("v0.37.6, built 2025-11-20", MIN_TILT)).toBeUndefined();
    expect(tiltProblem(`v${MIN_TILT}, built 2023-01-01`, MIN_TILT)).toBeUndefined();
    expect(tiltProblem("v0.32.9, built 2023-01-01", MIN_TILT)).toContain("older than 0.33.0");
    expect(tiltProblem("tilt: command output changed", MIN_TILT)).toContain("unrecognised");
  });

  it("no tool recommends the test build to users", () => {
    const sources = readdirSync(path.join(repoRoot, "scripts"), { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".ts"))
      .map((f) => readFileSync(path.join(repoRoot, "scripts", f), "utf8"));
    for (const text of sources) {
      expect(text).not.toContain("install-tools");
      expect(text).not.toMatch(/\.tools[/"', ]+bin/);
    }
  });
});
