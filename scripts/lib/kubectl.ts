import { execa, type ResultPromise } from "execa";
import { CliError, EXIT, type ExitCode } from "./exit-codes.ts";

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Pure: the exit code and fix for a failed kubectl call, from its stderr. */
export function classifyKubectlFailure(stderr: string): { exitCode: ExitCode; hint: string } {
  if (
    /connection refused|Unable to connect to the server|no such host|i\/o timeout|dial tcp|context deadline exceeded|TLS handshake timeout|was refused/i.test(
      stderr,
    )
  ) {
    return {
      exitCode: EXIT.clusterUnreachable,
      hint: "Start your local cluster (kind, k3d, minikube, Docker Desktop, OrbStack...) and check `kubectl config current-context`.",
    };
  }
  if (
    /current-context is not set|no configuration has been provided|context .* does not exist|invalid configuration/i.test(
      stderr,
    )
  ) {
    return {
      exitCode: EXIT.clusterUnreachable,
      hint: "kubectl has no usable context: create a local cluster (e.g. `kind create cluster`) or `kubectl config use-context <local>`.",
    };
  }
  if (/namespaces? "[^"]+" not found/i.test(stderr)) {
    return { exitCode: EXIT.namespaceMissing, hint: "Run `tilt up` to deploy kumomta-tilt into the namespace." };
  }
  return { exitCode: EXIT.commandFailed, hint: "See kubectl's message above." };
}

/** Runs kubectl; a missing binary becomes a CliError with the "kubectl missing" exit code. */
export async function kubectl(args: string[], timeoutMs = 30_000): Promise<CommandResult> {
  const r = await execa("kubectl", args, { reject: false, timeout: timeoutMs, stdin: "ignore" });
  // With reject: false a spawn failure comes back as the result, carrying the errno code.
  if ((r as { code?: string }).code === "ENOENT") throw kubectlMissing();
  return { exitCode: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

function kubectlMissing(): CliError {
  return new CliError(
    EXIT.kubectlMissing,
    "kubectl not found on PATH",
    "Install kubectl 1.32 (https://kubernetes.io/docs/tasks/tools/).",
  );
}

/** Pure: kubectl's own message without klog's "E1123 21:17:37.926073 ..." diagnostic lines. */
export function kubectlMessage(stderr: string): string {
  const lines = stderr.trim().split("\n");
  const plain = lines.filter((l) => !/^[EIWF]\d{4} \d\d:\d\d:\d\d/.test(l));
  return (plain.length > 0 ? plain : lines).slice(-3).join(" | ");
}

/** kubectl that must succeed: failures become a CliError with a classified exit code. */
export async function kubectlOk(args: string[], timeoutMs?: number): Promise<string> {
  const r = await kubectl(args, timeoutMs);
  if (r.exitCode !== 0) {
    const { exitCode, hint } = classifyKubectlFailure(r.stderr);
    throw new CliError(exitCode, `kubectl ${args.join(" ")} failed: ${kubectlMessage(r.stderr)}`, hint);
  }
  return r.stdout;
}

/** Fails clearly when the cluster is unreachable or the namespace is missing. */
export async function requireNamespace(namespace: string): Promise<void> {
  await kubectlOk(["get", "namespace", namespace, "-o", "name", "--request-timeout=10s"]);
}

/** Pure: the local port from kubectl port-forward's "Forwarding from 127.0.0.1:PORT -> 8000". */
export function parsePortForwardLine(line: string): number | undefined {
  const m = /Forwarding from 127\.0\.0\.1:(\d+) ->/.exec(line);
  return m ? Number(m[1]) : undefined;
}

export interface PortForward {
  port: number;
  close(): Promise<void>;
}

/**
 * A short-lived `kubectl port-forward` to one pod on an ephemeral local port. Traffic arrives in the pod from its
 * own loopback, which kumod and tsa-daemon trust for /metrics and admin endpoints.
 */
export async function portForward(
  namespace: string,
  target: string,
  remotePort: number,
  timeoutMs = 15_000,
): Promise<PortForward> {
  const child: ResultPromise = execa(
    "kubectl",
    ["port-forward", "-n", namespace, target, `:${remotePort}`, "--address", "127.0.0.1"],
    { reject: false, stdin: "ignore" },
  );
  const port = await new Promise<number>((resolve, reject) => {
    let out = "";
    let err = "";
    const timer = setTimeout(
      () => reject(new Error(`port-forward to ${target} gave no port within ${timeoutMs} ms`)),
      timeoutMs,
    );
    child.stdout?.on("data", (c: Buffer) => {
      out += c.toString();
      for (const line of out.split("\n")) {
        const p = parsePortForwardLine(line);
        if (p !== undefined) {
          clearTimeout(timer);
          resolve(p);
        }
      }
    });
    child.stderr?.on("data", (c: Buffer) => {
      err += c.toString();
    });
    child.then((r) => {
      clearTimeout(timer);
      reject(new Error(`port-forward to ${target} exited: ${(err || String(r.message)).trim()}`));
    });
  });
  return {
    port,
    async close() {
      child.kill("SIGTERM");
      await child;
    },
  };
}

/** tilt on PATH, the one users install (the tests' source build of tilt cannot `tilt up` and is not looked for). */
export async function findTilt(): Promise<string | undefined> {
  const r = await execa("tilt", ["version"], { reject: false, stdin: "ignore" });
  return r.exitCode === 0 ? "tilt" : undefined;
}

export interface PodInfo {
  name: string;
  app: string;
  phase: string;
  ready: boolean;
  restarts: number;
  reason?: string;
}

interface PodJson {
  metadata: { name: string; labels?: Record<string, string> };
  status?: {
    phase?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { restartCount?: number; state?: { waiting?: { reason?: string } } }[];
  };
}

/** Pure: pods from `kubectl get pods -o json`. */
export function parsePods(json: string): PodInfo[] {
  const list = JSON.parse(json) as { items?: PodJson[] };
  return (list.items ?? []).map((p) => {
    const cs = p.status?.containerStatuses ?? [];
    return {
      name: p.metadata.name,
      app: p.metadata.labels?.["app.kubernetes.io/name"] ?? "",
      phase: p.status?.phase ?? "Unknown",
      ready: (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True"),
      restarts: cs.reduce((s, c) => s + (c.restartCount ?? 0), 0),
      reason: cs.map((c) => c.state?.waiting?.reason).find((r) => r !== undefined),
    };
  });
}

export async function listPods(namespace: string, selector?: string): Promise<PodInfo[]> {
  const args = ["get", "pods", "-n", namespace, "-o", "json", "--request-timeout=10s"];
  if (selector) args.push("-l", selector);
  return parsePods(await kubectlOk(args));
}
