import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { parseAllDocuments } from "yaml";

export const repoRoot = path.resolve(import.meta.dirname, "../..");
export const toolBin = (name: string): string => {
  const bin = path.join(repoRoot, ".tools/bin", name);
  if (!existsSync(bin)) throw new Error(`${bin} is missing: run .ci/install-tools.sh (it builds the pinned tools)`);
  return bin;
};

export interface Manifest {
  Name: string;
  TriggerMode: number;
  ResourceDependencies: string[] | null;
  Labels: Record<string, string> | null;
  // biome-ignore lint/suspicious/noExplicitAny: tilt's JSON is unstable and only partly asserted on
  DeployTarget: any;
  // biome-ignore lint/suspicious/noExplicitAny: as above
  ImageTargets: any[] | null;
}

export interface TiltResult {
  exitCode: number;
  stderr: string;
  manifests: Manifest[];
  secretValues: Set<string>;
}

/** A kubeconfig whose context and cluster names decide what Tilt thinks the cluster is; the server is a closed port. */
async function kubeconfig(context: string, cluster: string): Promise<{ file: string; home: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), "kumomta-tilt-"));
  const file = path.join(dir, "kubeconfig");
  await writeFile(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      `clusters: [{name: "${cluster}", cluster: {server: "https://127.0.0.1:1"}}]`,
      `contexts: [{name: "${context}", context: {cluster: "${cluster}", user: "u"}}]`,
      `current-context: "${context}"`,
      "users: [{name: u, user: {token: not-a-real-token}}]",
    ].join("\n"),
  );
  return { file, home: dir };
}

/**
 * Evaluates the real Tiltfile with the real tilt binary, built from source by .ci/install-tools.sh (it cannot
 * `tilt up`, hence its name, but evaluates Tiltfiles like a release). The JSON carries Secret values in plain text,
 * so it is only ever held in memory.
 */
export async function evaluateTiltfile(
  args: string[] = [],
  opts: { context?: string; cluster?: string } = {},
): Promise<TiltResult> {
  const context = opts.context ?? "kind-kind";
  const bin = toolBin("tilt-tiltfile-eval");
  const { file, home } = await kubeconfig(context, opts.cluster ?? context);
  const run = await execa(
    bin,
    ["alpha", "tiltfile-result", "-f", "Tiltfile", ...(args.length ? ["--", ...args] : [])],
    {
      cwd: repoRoot,
      reject: false,
      env: { KUBECONFIG: file, HOME: home, TILT_DISABLE_ANALYTICS: "1", PATH: process.env.PATH },
      extendEnv: false,
      timeout: 120_000,
    },
  ).finally(() => rm(home, { recursive: true, force: true }));
  if (run.exitCode !== 0)
    return { exitCode: run.exitCode ?? -1, stderr: run.stderr, manifests: [], secretValues: new Set() };
  const json = JSON.parse(run.stdout);
  return {
    exitCode: 0,
    stderr: run.stderr,
    manifests: json.Manifests,
    secretValues: new Set(Object.keys(json.Secrets ?? {})),
  };
}

export function manifest(result: TiltResult, name: string): Manifest {
  const found = result.manifests.find((m) => m.Name === name);
  if (!found) throw new Error(`no Tilt resource named ${name}; have ${result.manifests.map((m) => m.Name).join(", ")}`);
  return found;
}

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects are asserted on field by field
export function objectsOf(m: Manifest): any[] {
  return parseAllDocuments(m.DeployTarget.yaml as string).map((d) => d.toJS());
}
