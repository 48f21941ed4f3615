import { readFileSync } from "node:fs";
import { join } from "node:path";
import chalk from "chalk";
import { execa } from "execa";
import { parseNamespaceToolArgs, runMain } from "./lib/cli.ts";
import {
  allPassed,
  type CheckResult,
  type CheckState,
  formatChecks,
  MIN_TILT,
  TILT_INSTALL_URL,
  tiltProblem,
  versionAtLeast,
  WORKLOADS,
} from "./lib/doctor-checks.ts";
import { loadToolEnv, REPO_ROOT, type ToolEnv } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import { kubectl, kubectlMessage, parsePods } from "./lib/kubectl.ts";
import { LOCAL_PRODUCTS, localProduct } from "./lib/local-context.ts";

/** package.json's `engines.node` (">=X.Y"): one place says which Node this project supports. */
const MIN_NODE = (
  JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as { engines: { node: string } }
).engines.node.replace(/^>=\s*/, "");

const HELP = `Usage: npm run doctor -- [--json] [--namespace NS]

Checks that everything kumomta-tilt needs is in place, each with a concrete fix:
  node version (>= ${MIN_NODE}), kubectl, tilt, a container runtime (docker, podman or nerdctl), the current
  kube context is a local cluster (Tilt's rules: ${LOCAL_PRODUCTS.join(", ")}) and reachable, the namespace
  exists and its pods (${WORKLOADS.join(", ")}) are ready, credentials in .env and accepted by kumod, the
  port-forwards (kumod :8000, sink :8025, tsa :8008) answer, sink and TSA healthy.
Checks that depend on a failed one are skipped (and count as not passed).

Options:
  --namespace NS   Kubernetes namespace [KUMOMTA_NAMESPACE, default kumomta]
  --json           print the results as one JSON object (on failure with exit_code and error too)
  -h, --help       this text

Exit codes:
${exitCodeTable([EXIT.ok, EXIT.usage, EXIT.checksFailed])}
`;

type Check = Omit<CheckResult, "name">;
const pass = (detail: string): Check => ({ state: "pass", detail, fix: "" });
const fail = (detail: string, fix: string): Check => ({ state: "fail", detail, fix });

async function run(cmd: string, args: string[], timeoutMs = 15_000) {
  const r = await execa(cmd, args, { reject: false, timeout: timeoutMs, stdin: "ignore" });
  return {
    ok: r.exitCode === 0,
    stdout: String(r.stdout ?? ""),
    stderr: String(r.stderr ?? ""),
    missing: r.exitCode === undefined,
  };
}

async function httpGet(
  url: string,
  init: RequestInit = {},
): Promise<{ status: number; text: string } | { error: string }> {
  try {
    const res = await fetch(url, { ...init, signal: AbortSignal.timeout(5000) });
    return { status: res.status, text: await res.text() };
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    return { error: cause?.code ?? cause?.message ?? (err as Error).message };
  }
}

class Doctor {
  readonly results: CheckResult[] = [];
  private readonly failed = new Set<string>();

  async check(name: string, needs: string[], fn: () => Promise<Check>): Promise<boolean> {
    const missing = needs.filter((n) => this.failed.has(n));
    let r: Check;
    if (missing.length > 0) r = { state: "skip", detail: `skipped: needs ${missing.join(", ")}`, fix: "" };
    else {
      try {
        r = await fn();
      } catch (err) {
        r = fail((err as Error).message, "see the message");
      }
    }
    this.results.push({ name, ...r });
    if (r.state !== "pass") this.failed.add(name);
    return r.state === "pass";
  }
}

async function diagnose(env: ToolEnv, ns: string): Promise<CheckResult[]> {
  const d = new Doctor();
  await d.check("node", [], async () =>
    versionAtLeast(process.version, MIN_NODE)
      ? pass(`Node ${process.version}`)
      : fail(
          `Node ${process.version} is older than ${MIN_NODE}`,
          `install Node ${MIN_NODE} or newer (e.g. \`nvm install ${MIN_NODE.split(".")[0]}\`)`,
        ),
  );
  await d.check("kubectl", [], async () => {
    const r = await run("kubectl", ["version", "--client", "-o", "json"]);
    if (!r.ok)
      return fail(
        r.missing ? "not found on PATH" : r.stderr.trim(),
        "install kubectl 1.32: https://kubernetes.io/docs/tasks/tools/",
      );
    const v = (JSON.parse(r.stdout) as { clientVersion?: { gitVersion?: string } }).clientVersion?.gitVersion ?? "?";
    return pass(`kubectl ${v}`);
  });
  await d.check("tilt", [], async () => {
    const r = await run("tilt", ["version"]);
    const install = `install Tilt ${MIN_TILT} or newer the official way: ${TILT_INSTALL_URL}`;
    if (!r.ok) return fail(r.missing ? "not found on PATH" : r.stderr.trim(), install);
    const stamp = r.stdout.trim().split("\n")[0] ?? "";
    const problem = tiltProblem(stamp, MIN_TILT);
    return problem ? fail(problem, install) : pass(`tilt ${stamp}`);
  });
  await d.check("container runtime", [], async () => {
    const tried: string[] = [];
    for (const cmd of ["docker", "podman", "nerdctl"]) {
      const r = await run(cmd, ["info", "--format", "{{.ServerVersion}}"], 10_000);
      if (r.ok) return pass(`${cmd} ${r.stdout.trim()}`);
      tried.push(`${cmd}: ${r.missing ? "not installed" : (r.stderr.trim().split("\n").at(-1) ?? "not running")}`);
    }
    return fail(
      tried.join("; "),
      "start Docker Desktop, OrbStack, Rancher Desktop, colima or podman machine (the local cluster needs it)",
    );
  });
  let clusterName = "";
  await d.check("kube context is local", ["kubectl"], async () => {
    const r = await run("kubectl", ["config", "view", "--minify", "-o", "json"]);
    if (!r.ok)
      return fail(
        kubectlMessage(r.stderr),
        "create a local cluster, e.g. `kind create cluster` or `k3d cluster create`",
      );
    const cfg = JSON.parse(r.stdout) as { "current-context"?: string; contexts?: { context?: { cluster?: string } }[] };
    const context = cfg["current-context"] ?? "";
    clusterName = cfg.contexts?.[0]?.context?.cluster ?? context;
    const product = localProduct(clusterName, context);
    return product
      ? pass(`context ${context} (${product})`)
      : fail(
          `context "${context}" (cluster "${clusterName}") is not a known local cluster`,
          "`kubectl config use-context <local context>` (kind-*, k3d-*, minikube, docker-desktop, orbstack, ...); Tilt refuses remote contexts too",
        );
  });
  await d.check("cluster reachable", ["kubectl"], async () => {
    const r = await kubectl(["get", "--raw", "/readyz", "--request-timeout=5s"], 15_000);
    return r.exitCode === 0
      ? pass(`API server ready (${clusterName || "current context"})`)
      : fail(
          kubectlMessage(r.stderr),
          "start the local cluster (e.g. `docker start kind-control-plane`, `k3d cluster start`, `minikube start`)",
        );
  });
  await d.check(`namespace ${ns}`, ["cluster reachable"], async () => {
    const r = await kubectl(["get", "namespace", ns, "-o", "name", "--request-timeout=5s"]);
    return r.exitCode === 0
      ? pass("exists")
      : fail(kubectlMessage(r.stderr), "run `tilt up` (it creates the namespace and deploys everything)");
  });
  await d.check("pods ready", [`namespace ${ns}`], async () => {
    const r = await kubectl(["get", "pods", "-n", ns, "-o", "json", "--request-timeout=5s"]);
    if (r.exitCode !== 0) return fail(kubectlMessage(r.stderr), `check \`kubectl get pods -n ${ns}\``);
    const pods = parsePods(r.stdout);
    const missing = WORKLOADS.filter((w) => !pods.some((p) => p.app === w));
    const notReady = pods.filter((p) => !p.ready && p.phase !== "Succeeded");
    if (missing.length > 0 || notReady.length > 0) {
      const parts = [
        ...missing.map((w) => `no ${w} pod`),
        ...notReady.map((p) => `${p.name} ${p.reason ?? p.phase}${p.restarts ? ` (${p.restarts} restarts)` : ""}`),
      ];
      return fail(
        parts.join(", "),
        `see the Tilt UI or \`kubectl describe pod -n ${ns} <pod>\` / \`kubectl logs -n ${ns} <pod>\``,
      );
    }
    return pass(`${pods.length} pods ready`);
  });
  await d.check("credentials in .env", [], async () =>
    env.kumoUser && env.kumoPassword
      ? pass(`user ${env.kumoUser} (${env.envFileFound ? env.envFile : "environment"})`)
      : fail(
          `KUMO_HTTP_USER/KUMO_HTTP_PASSWORD not set (${env.envFile} ${env.envFileFound ? "incomplete" : "missing"})`,
          "run `npm run seed`, then `tilt up`",
        ),
  );
  await d.check("kumod port-forward", [], async () => {
    const r = await httpGet(new URL("/api/check-liveness/v1", env.kumoUrl).href);
    if ("error" in r) return fail(`${env.kumoUrl}: ${r.error}`, "run `tilt up` (it forwards localhost:8000 to kumod)");
    return r.status === 200
      ? pass(`${env.kumoUrl} live`)
      : fail(`${env.kumoUrl} liveness ${r.status}: ${r.text.trim()}`, "see kumod logs in the Tilt UI");
  });
  await d.check("credentials accepted by kumod", ["credentials in .env", "kumod port-forward"], async () => {
    // An empty body with credentials: kumod checks the credentials first (401) and only then the body (422), so
    // 422 proves they were accepted without injecting anything.
    const auth = Buffer.from(`${env.kumoUser}:${env.kumoPassword}`).toString("base64");
    const r = await httpGet(new URL("/api/inject/v1", env.kumoUrl).href, {
      method: "POST",
      headers: { authorization: `Basic ${auth}`, "content-type": "application/json" },
      body: "{}",
    });
    if ("error" in r) return fail(r.error, "run `tilt up`");
    if (r.status === 401)
      return fail(
        "kumod answered 401",
        "the .env and the kumo-http-auth Secret differ: `npm run seed`, then `tilt up` again",
      );
    return r.status === 422 || r.status === 400
      ? pass(`accepted (probe answered ${r.status}, nothing injected)`)
      : fail(`unexpected ${r.status}: ${r.text.trim()}`, "see kumod logs in the Tilt UI");
  });
  await d.check("sink healthy", [], async () => {
    const r = await httpGet(new URL("/readyz", env.sinkUrl).href);
    if ("error" in r)
      return fail(`${env.sinkUrl}: ${r.error}`, "run `tilt up` (it forwards localhost:8025 to the sink)");
    return r.status === 200
      ? pass(`${env.sinkUrl} ready`)
      : fail(`${env.sinkUrl}/readyz ${r.status}: ${r.text.trim()}`, "see the sink logs in the Tilt UI");
  });
  await d.check("tsa healthy", [], async () => {
    const r = await httpGet(new URL("/tsa/status", env.tsaUrl).href);
    if ("error" in r) return fail(`${env.tsaUrl}: ${r.error}`, "run `tilt up` (it forwards localhost:8008 to tsa)");
    return r.status === 200
      ? pass(`${env.tsaUrl}: ${r.text.trim()}`)
      : fail(`${env.tsaUrl}/tsa/status ${r.status}`, "see tsa logs in the Tilt UI");
  });
  return d.results;
}

const MARK: Record<CheckState, string> = {
  pass: chalk.green("[pass]"),
  fail: chalk.red("[FAIL]"),
  skip: chalk.yellow("[skip]"),
};

async function main(): Promise<ExitCode> {
  const values = parseNamespaceToolArgs("doctor", HELP);
  if (values === null) return EXIT.ok;
  const env = loadToolEnv();
  const results = await diagnose(env, values.namespace ?? env.namespace);
  const code = allPassed(results) ? EXIT.ok : EXIT.checksFailed;
  const report = { ok: code === EXIT.ok, exit_code: code, checks: results };
  if (!values.json) process.stdout.write(`${formatChecks(results, (s) => MARK[s])}\n`);
  if (code !== EXIT.ok) {
    const failed = results.filter((r) => r.state === "fail").map((r) => r.name);
    const skipped = results.filter((r) => r.state === "skip").length;
    throw new CliError(
      code,
      `${failed.length} of ${results.length} checks failed (${failed.join(", ")})${skipped > 0 ? `, ${skipped} skipped` : ""}`,
      "Each failed check says how to fix it; fix the first one, then run `npm run doctor` again.",
      report,
    );
  }
  if (values.json) process.stdout.write(`${JSON.stringify({ ...report, error: null })}\n`);
  return code;
}

runMain(main);
