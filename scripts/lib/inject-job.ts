import type { InjectOptions } from "./inject-args.ts";

/**
 * `npm run inject -- --in-cluster`: the same injector as a Kubernetes Job in the namespace. Pure parts: the
 * command line handed to the pod, the Job manifest, and reading the pod's state.
 */

export const IN_CLUSTER_FLAG = "--in-cluster";
/** The pods' label: the NetworkPolicies inject-job-egress and kumod-from-inject-job select it. */
export const INJECT_JOB_LABEL = "inject-job";
/**
 * The kumod Service, not each pod's headless name: a restarting pod drops out of the headless DNS (no
 * publishNotReadyAddresses), and a name that does not resolve ends a run at once (ENOTFOUND is never a restart),
 * while the Service's address stays and kube-proxy sends each new connection to a ready pod only. The injector's
 * keep-alive connections are spread over the pods when they open and move to another pod when theirs goes away.
 */
export const IN_CLUSTER_KUMOD_URL = "http://kumod:8000";
export const IN_CLUSTER_SINK_URL = "http://sink:8025";
/** The program in the console image that runs the injector (its entrypoint is the console). */
export const INJECT_COMMAND = ["node", "--import", "tsx", "scripts/inject.ts"];
/** A finished Job the CLI could not delete (killed terminal, lost cluster) goes away on its own after this. */
export const JOB_TTL_SECONDS = 600;

/** Splits `--in-cluster` off the command line (options only: after "--" it is an argument). */
export function splitInCluster(argv: readonly string[]): { inCluster: boolean; argv: string[] } {
  const end = argv.indexOf("--");
  const options = end < 0 ? argv : argv.slice(0, end);
  if (!options.includes(IN_CLUSTER_FLAG)) return { inCluster: false, argv: [...argv] };
  const rest = options.filter((a) => a !== IN_CLUSTER_FLAG);
  return { inCluster: true, argv: end < 0 ? rest : [...rest, ...argv.slice(end)] };
}

/**
 * Options that name something on this machine or replace what the Job decides (the kumod Service, the sink
 * Service, the Secret's credentials): a usage error with --in-cluster rather than silently ignored.
 */
export function inClusterConflict(opts: InjectOptions): string | undefined {
  const taken: [boolean, string, string][] = [
    [opts.urls !== undefined, "--url", `the Job injects into the kumod Service (${IN_CLUSTER_KUMOD_URL})`],
    [opts.sinkUrl !== undefined, "--sink-url", `--verify reads the sink Service (${IN_CLUSTER_SINK_URL})`],
    [
      opts.user !== undefined || opts.password !== undefined,
      "--user/--password",
      "the Job reads the kumo-http-auth Secret",
    ],
    [opts.payload !== undefined, "--payload", "the file is on this machine, not in the Job's image"],
  ];
  const hit = taken.find(([set]) => set);
  return hit ? `${hit[1]} cannot be used with --in-cluster: ${hit[2]}` : undefined;
}

/** The injector's arguments in the pod: the user's, plus the in-cluster targets; no progress bar (no terminal). */
export function podArgs(argv: readonly string[], verify: boolean): string[] {
  const end = argv.indexOf("--");
  const options = end < 0 ? [...argv] : argv.slice(0, end);
  return [
    ...options,
    "--url",
    IN_CLUSTER_KUMOD_URL,
    ...(verify ? ["--sink-url", IN_CLUSTER_SINK_URL] : []),
    "--no-progress",
  ];
}

export interface InjectJobSpec {
  namespace: string;
  /** The console Deployment's image, exactly as running (Tilt's tag, registry included). */
  image: string;
  imagePullPolicy?: string;
  /** The generated kumo-http-auth Secret's name (with its hash suffix), as kumod mounts it. */
  secretName: string;
  args: string[];
}

/** The Job: one pod, never restarted (a rerun would inject twice), with the sink's and console's hardening. */
export function injectJob(spec: InjectJobSpec): Record<string, unknown> {
  const labels = {
    "app.kubernetes.io/name": INJECT_JOB_LABEL,
    "app.kubernetes.io/component": "load",
    "app.kubernetes.io/part-of": "kumomta-tilt",
  };
  const secretEnv = (name: string, key: string) => ({
    name,
    valueFrom: { secretKeyRef: { name: spec.secretName, key } },
  });
  return {
    apiVersion: "batch/v1",
    kind: "Job",
    metadata: { generateName: "inject-", namespace: spec.namespace, labels },
    spec: {
      backoffLimit: 0,
      ttlSecondsAfterFinished: JOB_TTL_SECONDS,
      template: {
        metadata: { labels },
        spec: {
          restartPolicy: "Never",
          automountServiceAccountToken: false,
          // The console image's USER 1000 (the node image's `node` user).
          securityContext: {
            runAsNonRoot: true,
            runAsUser: 1000,
            runAsGroup: 1000,
            fsGroup: 1000,
            seccompProfile: { type: "RuntimeDefault" },
          },
          containers: [
            {
              name: "inject",
              image: spec.image,
              ...(spec.imagePullPolicy ? { imagePullPolicy: spec.imagePullPolicy } : {}),
              command: INJECT_COMMAND,
              args: spec.args,
              env: [secretEnv("KUMO_HTTP_USER", "username"), secretEnv("KUMO_HTTP_PASSWORD", "password")],
              resources: {
                requests: { cpu: "250m", memory: "128Mi", "ephemeral-storage": "16Mi" },
                limits: { memory: "512Mi", "ephemeral-storage": "256Mi" },
              },
              securityContext: {
                allowPrivilegeEscalation: false,
                privileged: false,
                readOnlyRootFilesystem: true,
                capabilities: { drop: ["ALL"] },
              },
              // tsx keeps its compile cache here.
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            },
          ],
          volumes: [{ name: "tmp", emptyDir: { sizeLimit: "128Mi" } }],
        },
      },
    },
  };
}

export type PodState =
  | { state: "pending"; reason?: string }
  | { state: "stuck"; reason: string; message: string }
  | { state: "running" }
  | { state: "terminated"; exitCode: number; reason?: string };

/** Waiting reasons that do not go away by waiting: the CLI stops instead of hanging. */
const STUCK = new Set([
  "ErrImagePull",
  "ImagePullBackOff",
  "InvalidImageName",
  "CreateContainerConfigError",
  "CreateContainerError",
]);

interface PodJson {
  status?: {
    phase?: string;
    containerStatuses?: {
      state?: {
        waiting?: { reason?: string; message?: string };
        running?: object;
        terminated?: { exitCode?: number; reason?: string };
      };
    }[];
  };
}

/** Pure: the Job's pod from `kubectl get pods -l job-name=NAME -o json`. */
export function podState(json: string): PodState {
  const pod = ((JSON.parse(json) as { items?: PodJson[] }).items ?? [])[0];
  const s = pod?.status?.containerStatuses?.[0]?.state;
  if (s?.terminated) return { state: "terminated", exitCode: s.terminated.exitCode ?? 1, reason: s.terminated.reason };
  if (s?.running) return { state: "running" };
  const waiting = s?.waiting;
  if (waiting?.reason && STUCK.has(waiting.reason))
    return { state: "stuck", reason: waiting.reason, message: waiting.message ?? "" };
  return { state: "pending", reason: waiting?.reason ?? pod?.status?.phase };
}

/**
 * Where a line of the pod's log goes here. kubectl logs merges the pod's stdout and stderr; with --json the summary
 * is the one line that is a JSON object, so it alone goes to stdout and `--json > run.json` keeps working. Without
 * --json the summary goes to stdout and the injector's error and hint lines to stderr, as they would locally.
 */
export function logLineStream(line: string, json: boolean): "stdout" | "stderr" {
  if (!json) return /^(error|hint): /.test(line) ? "stderr" : "stdout";
  if (!line.startsWith("{")) return "stderr";
  try {
    JSON.parse(line);
    return "stdout";
  } catch {
    return "stderr";
  }
}
