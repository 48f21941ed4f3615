import { execa } from "execa";
import { CliError, EXIT, type ExitCode } from "./exit-codes.ts";
import { injectJob, logLineStream, type PodState, podState } from "./inject-job.ts";
import { classifyKubectlFailure, kubectlMessage, kubectlOk, requireNamespace } from "./kubectl.ts";

/** How long the Job's pod may take to start (image present: seconds; a pull on a slow link: a minute or two). */
const START_TIMEOUT_MS = 180_000;

interface Workload {
  spec: {
    template: {
      spec: {
        containers: { name: string; image: string; imagePullPolicy?: string }[];
        volumes?: { name: string; secret?: { secretName: string } }[];
      };
    };
  };
}

async function getWorkload(namespace: string, kind: string, name: string): Promise<Workload> {
  try {
    return JSON.parse(
      await kubectlOk(["get", kind, name, "-n", namespace, "-o", "json", "--request-timeout=10s"]),
    ) as Workload;
  } catch (err) {
    if (err instanceof CliError && err.exitCode === EXIT.commandFailed && /not ?found/i.test(err.message)) {
      throw new CliError(
        EXIT.commandFailed,
        `${kind}/${name} is not in namespace ${namespace}: ${err.message}`,
        "Run `tilt up` and wait until kumod and the console are ready: the Job runs the console's image against kumod.",
      );
    }
    throw err;
  }
}

/** The console's image exactly as it runs (Tilt's tag), and the kumo-http-auth Secret kumod mounts. */
async function clusterFacts(namespace: string) {
  const console = await getWorkload(namespace, "deployment", "console");
  const c = console.spec.template.spec.containers.find((x) => x.name === "console");
  const kumod = await getWorkload(namespace, "statefulset", "kumod");
  const secretName = kumod.spec.template.spec.volumes?.find((v) => v.name === "http-auth")?.secret?.secretName;
  if (!c || !secretName) {
    throw new CliError(
      EXIT.commandFailed,
      "the console Deployment or kumod StatefulSet in the cluster is not the one k8s/base describes",
      "Run `tilt up` again to deploy the current manifests.",
    );
  }
  return { image: c.image, imagePullPolicy: c.imagePullPolicy, secretName };
}

async function createJob(manifest: Record<string, unknown>): Promise<string> {
  const r = await execa("kubectl", ["create", "-f", "-", "-o", "name", "--request-timeout=20s"], {
    input: JSON.stringify(manifest),
    reject: false,
  });
  if (r.exitCode !== 0) {
    const { exitCode, hint } = classifyKubectlFailure(String(r.stderr));
    throw new CliError(exitCode, `kubectl create (the inject Job) failed: ${kubectlMessage(String(r.stderr))}`, hint);
  }
  return String(r.stdout)
    .trim()
    .replace(/^job(\.batch)?\//, "");
}

async function deleteJob(namespace: string, name: string): Promise<void> {
  // Background: the pod goes with the Job; ttlSecondsAfterFinished is the backstop if this fails.
  await execa("kubectl", ["delete", "job", name, "-n", namespace, "--wait=false", "--ignore-not-found"], {
    reject: false,
    stdin: "ignore",
    timeout: 20_000,
  });
}

async function readPod(namespace: string, job: string): Promise<PodState> {
  return podState(await kubectlOk(["get", "pods", "-n", namespace, "-l", `job-name=${job}`, "-o", "json"]));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForStart(namespace: string, job: string): Promise<void> {
  const start = Date.now();
  let last = "";
  for (;;) {
    const s = await readPod(namespace, job);
    if (s.state === "running" || s.state === "terminated") return;
    if (s.state === "stuck") {
      throw new CliError(
        EXIT.commandFailed,
        `the inject Job's pod cannot start: ${s.reason} ${s.message}`.trim(),
        "The Job runs the console's image: check `kubectl get deployment console` and that Tilt built it.",
      );
    }
    const reason = s.reason ?? "Pending";
    if (reason !== last) process.stderr.write(`job/${job}: ${reason}\n`);
    last = reason;
    if (Date.now() - start > START_TIMEOUT_MS) {
      throw new CliError(
        EXIT.commandFailed,
        `the inject Job's pod did not start within ${START_TIMEOUT_MS / 1000} s (${reason})`,
        `See \`kubectl describe pod -n ${namespace} -l job-name=${job}\`.`,
      );
    }
    await sleep(1000);
  }
}

/** Streams the pod's log here, line by line, until the container ends. */
async function streamLogs(namespace: string, job: string, json: boolean, started: (stop: () => void) => void) {
  // Its own process group: Ctrl-C in the terminal goes to the injector in the pod (see runInCluster), and the log
  // keeps flowing until the injector has printed its summary.
  const child = execa("kubectl", ["logs", "-f", `job/${job}`, "-n", namespace], {
    reject: false,
    stdin: "ignore",
    detached: true,
  });
  started(() => child.kill());
  let rest = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split("\n");
    rest = lines.pop() ?? "";
    for (const line of lines) process[logLineStream(line, json)].write(`${line}\n`);
  });
  const r = await child;
  if (rest) process[logLineStream(rest, json)].write(`${rest}\n`);
  if (r.exitCode !== 0) process.stderr.write(`kubectl logs: ${kubectlMessage(String(r.stderr))}\n`);
}

/** The injector's own exit code, from the terminated container (the status can lag the end of the log). */
async function waitForExit(namespace: string, job: string): Promise<ExitCode> {
  for (let i = 0; i < 60; i++) {
    const s = await readPod(namespace, job);
    if (s.state === "terminated") {
      // OOMKilled and other kills are not the injector's codes.
      if (s.reason !== undefined && s.reason !== "Completed" && s.reason !== "Error") {
        process.stderr.write(`error: the inject pod ended with ${s.reason} (exit ${s.exitCode})\n`);
        return EXIT.commandFailed;
      }
      return s.exitCode as ExitCode;
    }
    await sleep(1000);
  }
  throw new CliError(EXIT.commandFailed, `job/${job}: the log ended but the pod did not terminate within 60 s`);
}

/**
 * Runs the injector as a Job in `namespace` with `args`, its log streamed here, and returns its exit code. The Job
 * is deleted when it ends, on a failure here, and on Ctrl-C.
 */
export async function runInCluster(namespace: string, args: string[], json: boolean): Promise<ExitCode> {
  await requireNamespace(namespace);
  const facts = await clusterFacts(namespace);
  const job = await createJob(injectJob({ namespace, args, ...facts }));
  process.stderr.write(`job/${job} in namespace ${namespace} (image ${facts.image}): injecting from the cluster\n`);
  let started = false;
  let stopLogs = () => {};
  let interrupts = 0;
  const quit = () => {
    stopLogs();
    process.stderr.write(`\nstopping: deleting job/${job}\n`);
    deleteJob(namespace, job).finally(() => process.exit(EXIT.interrupted));
  };
  // Ctrl-C as without --in-cluster: the injector in the pod stops sending, waits for its requests in flight and
  // prints its summary (SIGINT to its node process, PID 1). Before it runs, or a second time: the Job is deleted.
  const onSigint = () => {
    interrupts++;
    if (!started || interrupts > 1) return quit();
    process.stderr.write("\nstopping the injector in the cluster (Ctrl-C again to delete the Job now)\n");
    interruptInjector(namespace, job).then((ok) => ok || quit());
  };
  process.on("SIGINT", onSigint);
  try {
    await waitForStart(namespace, job);
    started = true;
    await streamLogs(namespace, job, json, (stop) => {
      stopLogs = stop;
    });
    return await waitForExit(namespace, job);
  } finally {
    process.off("SIGINT", onSigint);
    await deleteJob(namespace, job);
  }
}

async function interruptInjector(namespace: string, job: string): Promise<boolean> {
  const r = await execa("kubectl", ["exec", "-n", namespace, `job/${job}`, "--", "sh", "-c", "kill -INT 1"], {
    reject: false,
    stdin: "ignore",
    timeout: 15_000,
  });
  return r.exitCode === 0;
}
