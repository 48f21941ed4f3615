import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { closedUrl, ROOT } from "./run-inject.ts";
import { type RunningSink, startSink } from "./sink-process.ts";

/**
 * status, doctor, reset and scenario as real processes. No cluster here: real kubectl with a throw-away
 * KUBECONFIG whose API server is a closed localhost port (context named like a kind cluster).
 */
const tmp = mkdtempSync(join(tmpdir(), "tools-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes a kubeconfig whose one context points at a closed localhost port; returns its path. */
function writeKubeconfig(file: string, cluster: string, context: string): string {
  const path = join(tmp, file);
  writeFileSync(
    path,
    `apiVersion: v1
kind: Config
clusters:
- cluster: {server: "https://127.0.0.1:9"}
  name: ${cluster}
contexts:
- context: {cluster: ${cluster}, user: nobody}
  name: ${context}
current-context: ${context}
users:
- name: nobody
  user: {token: not-a-secret}
`,
  );
  return path;
}

const kubeconfig = writeKubeconfig("kubeconfig", "kind-closed", "kind-closed");
const noSink = await closedUrl();

function tool(script: string, args: string[], env: Record<string, string> = {}) {
  return execa("node", ["--import", "tsx", resolve(ROOT, `scripts/${script}.ts`), ...args], {
    cwd: ROOT,
    reject: false,
    stdin: "ignore",
    env: {
      KUBECONFIG: kubeconfig,
      KUMO_HTTP_URL: "http://127.0.0.1:9",
      KUMO_HTTP_USER: "",
      KUMO_HTTP_PASSWORD: "",
      SINK_HTTP_URL: noSink,
      TSA_HTTP_URL: "http://127.0.0.1:9",
      ...env,
    },
  });
}

describe("without a cluster", () => {
  it("status says the cluster is unreachable (exit 14)", async () => {
    const r = await tool("status", []);
    expect(r.exitCode).toBe(14);
    expect(r.stderr).toContain("127.0.0.1:9 was refused");
    expect(r.stderr).toContain("hint: Start your local cluster");
    expect(r.stderr).not.toMatch(/^E\d{4}/m);
  });

  it("status says kubectl is missing (exit 13)", async () => {
    // A PATH with node and nothing else.
    const bin = join(tmp, "bin");
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, "node"));
    const r = await tool("status", [], { PATH: bin });
    expect(r.exitCode).toBe(13);
    expect(r.stderr).toContain("kubectl not found");
  });

  it("doctor fails with exit 16, a fix per failed check, and skips what depends on the cluster", async () => {
    const r = await tool("doctor", ["--json"]);
    expect(r.exitCode).toBe(16);
    const out = JSON.parse(r.stdout) as { ok: boolean; checks: { name: string; state: string; fix: string }[] };
    expect(out.ok).toBe(false);
    const byName = new Map(out.checks.map((c) => [c.name, c]));
    expect(byName.get("node")?.state).toBe("pass");
    expect(byName.get("kubectl")?.state).toBe("pass");
    expect(byName.get("kube context is local")).toMatchObject({ state: "pass" });
    expect(byName.get("cluster reachable")?.state).toBe("fail");
    expect(byName.get("namespace kumomta")?.state).toBe("skip");
    expect(byName.get("pods ready")?.state).toBe("skip");
    expect(byName.get("kumod port-forward")).toMatchObject({ state: "fail" });
    expect(byName.get("credentials in .env")?.fix).toContain("npm run seed");
    for (const c of out.checks.filter((x) => x.state === "fail")) expect(c.fix).not.toBe("");
  });

  it("doctor flags a remote-looking context", async () => {
    const remote = writeKubeconfig("remote-kubeconfig", "gke_prod_europe-west1_main", "prod");
    const r = await tool("doctor", [], { KUBECONFIG: remote });
    expect(r.exitCode).toBe(16);
    expect(r.stdout).toMatch(/\[FAIL\] kube context is local: context "prod".*not a known local cluster/);
    expect(r.stdout).toContain("kubectl config use-context");
  });

  it("reset refuses without a terminal and without --yes (exit 17)", async () => {
    const r = await tool("reset", []);
    expect(r.exitCode).toBe(17);
    expect(r.stderr).toContain("npm run reset -- --yes");
  });

  it("reset --yes says the cluster is unreachable (exit 14) and deletes nothing", async () => {
    const r = await tool("reset", ["--yes"]);
    expect(r.exitCode).toBe(14);
    expect(r.stdout).not.toContain("deleting");
  });

  it("scenario says the sink is unreachable (exit 11)", async () => {
    const r = await tool("scenario", []);
    expect(r.exitCode).toBe(11);
    expect(r.stderr).toContain(`cannot reach the sink at ${noSink} (ECONNREFUSED)`);
  });

  it("status --json without a cluster prints exit_code and error on stdout", async () => {
    const r = await tool("status", ["--json"]);
    expect(r.exitCode).toBe(14);
    const out = JSON.parse(r.stdout) as { exit_code: number; error: { message: string; hint: string } };
    expect(out.exit_code).toBe(14);
    expect(out.error.message).toContain("127.0.0.1:9 was refused");
    expect(out.error.hint).toContain("Start your local cluster");
  });

  it.each([
    ["status", ["--json", "--bogus"], 2],
    ["doctor", ["--json", "--bogus"], 2],
    ["scenario", ["--json"], 11],
    ["scenario", ["--json", "--sink-url", "not a url"], 2],
    ["seed", ["--json", "--rotat"], 2],
    ["inject", ["--json", "--count", "0"], 2],
  ])("%s %j fails with one JSON object on stdout: exit_code and error", async (script, args, code) => {
    const r = await tool(script, args);
    expect(r.exitCode).toBe(code);
    expect(r.stdout.trim().split("\n")).toHaveLength(1);
    const out = JSON.parse(r.stdout) as { exit_code: number; error: { message: string; hint: string } };
    expect(out.exit_code).toBe(code);
    expect(r.stderr).toContain(`error: ${out.error.message}`);
    expect(r.stderr).toContain(`hint: ${out.error.hint}`);
  });

  it("doctor's failed checks come with exit_code and error in its JSON, and as error lines", async () => {
    const r = await tool("doctor", ["--json"]);
    expect(r.exitCode).toBe(16);
    const out = JSON.parse(r.stdout) as { exit_code: number; error: { message: string } };
    expect(out).toMatchObject({
      exit_code: 16,
      error: { message: expect.stringMatching(/checks failed \(.*cluster reachable/) },
    });
    expect(r.stderr).toMatch(/^error: \d+ of \d+ checks failed/m);
  });

  it.each([
    [["--sink-url", "not a url"], 'sink URL "not a url" is not a URL', "Set --sink-url (or SINK_HTTP_URL"],
    [["--sink-url", "http://127.0.0.1:6000"], "fetch refuses to connect to port 6000", "another local port"],
  ])("scenario %j is a usage error (exit 2) that says what to change", async (args, message, hint) => {
    const r = await tool("scenario", args);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`error: ${message}`);
    expect(r.stderr).toMatch(new RegExp(`^hint: .*${hint.replace(/[()]/g, "\\$&")}`, "m"));
    expect(r.stderr).not.toContain("TypeError");
  });

  it("status treats a SINK_HTTP_URL that is not a URL as a usage error (exit 2) before asking the cluster", async () => {
    const r = await tool("status", [], { SINK_HTTP_URL: "localhost:8025" });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('error: sink URL "localhost:8025" does not start with http://');
    expect(r.stderr).toContain("hint: Set SINK_HTTP_URL (e.g. in .env) like http://localhost:8025.");
  });

  it.each(["status", "doctor", "reset", "scenario"])("%s --help lists its exit codes", async (script) => {
    const r = await tool(script, ["--help"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("Exit codes:");
    const bad = await tool(script, ["--bogus"]);
    expect(bad.exitCode).toBe(2);
  });
});

describe("scenario against the real sink", () => {
  let sink: RunningSink;
  beforeAll(async () => {
    sink = await startSink("accept-all");
  });
  afterAll(async () => {
    await sink?.stop();
  });

  it("prints the current and available scenarios, switches, and rejects unknown names", async () => {
    const env = { SINK_HTTP_URL: sink.httpUrl };
    const show = await tool("scenario", ["--json"], env);
    expect(show.exitCode, show.stderr).toBe(0);
    const before = JSON.parse(show.stdout) as { name: string; available: string[] };
    expect(before.name).toBe("accept-all");
    expect(before.available).toContain("realistic");

    const sw = await tool("scenario", ["realistic"], env);
    expect(sw.exitCode, sw.stderr).toBe(0);
    expect(sw.stdout).toContain("accept-all -> realistic");
    const stats = (await (await fetch(`${sink.httpUrl}/api/stats`)).json()) as { scenario: string };
    expect(stats.scenario).toBe("realistic");

    const bad = await tool("scenario", ["no-such-scenario"], env);
    expect(bad.exitCode).toBe(18);
    expect(bad.stderr).toContain('unknown scenario "no-such-scenario"');
    expect(bad.stderr).toContain("accept-all");

    const text = await tool("scenario", [], env);
    expect(text.stdout).toContain("active scenario: realistic");
  });
});
