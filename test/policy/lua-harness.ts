import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { execa } from "execa";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const policyDir = path.join(repoRoot, "policy");
const runner = path.join(repoRoot, "test/policy/harness/run.lua");
export const LUA = "lua5.4";

export interface Call {
  fn: string;
  // biome-ignore lint/suspicious/noExplicitAny: arguments recorded by the Lua harness, asserted field by field
  args: any;
}

export interface Registration {
  event: string;
  by: string;
}

export interface StepResult {
  step: string;
  args: string[];
  ok: boolean;
  // biome-ignore lint/suspicious/noExplicitAny: results recorded by the Lua harness, asserted field by field
  result?: any;
  error?: unknown;
}

export interface HarnessOutput {
  ok: boolean;
  error?: string;
  exitCode: number;
  results: StepResult[];
  calls: Call[];
  registrations: Registration[];
}

/** Environment the kumod StatefulSet gives the policy (internal contract), before overrides. */
export function kumodEnv(authDir: string, overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const base: Record<string, string | undefined> = {
    POD_NAMESPACE: "kumomta",
    POD_NAME: "kumod-0",
    CLUSTER_DOMAIN: "cluster.local",
    TSA_STS: "tsa",
    TSA_HEADLESS: "tsa-headless",
    TSA_REPLICAS: "2",
    TSA_SERVICE: "tsa",
    TSA_PORT: "8008",
    PROXY_STS: "proxy",
    PROXY_REPLICAS: "2",
    PROXY_PORT: "5000",
    SINK_SERVICE: "sink",
    SINK_SMTP_PORT: "2525",
    SINK_SITE_PORTS: "google=2526,yahoo=2527,outlook=2528",
    SINK_TLS: "Disabled",
    DRAGONFLY_SERVICE: "dragonfly",
    DRAGONFLY_PORT: "6379",
    DRAGONFLY_PASSWORD: "dfly-test-password",
    KUMO_TRUSTED_HOSTS: "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fd00::/8",
    KUMO_HTTP_AUTH_DIR: authDir,
    ...overrides,
  };
  return Object.fromEntries(Object.entries(base).filter((e): e is [string, string] => e[1] !== undefined));
}

/** Writes a credentials directory shaped like the mounted kumo-http-auth Secret. */
export async function credentialsDir(username: string, password: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "kumo-http-auth-"));
  await writeFile(path.join(dir, "username"), username, { mode: 0o600 });
  await writeFile(path.join(dir, "password"), password, { mode: 0o600 });
  return dir;
}

/**
 * Runs policy/<file> in a real Lua 5.4 VM with the recording kumo module and fires `steps`
 * (see test/policy/harness/run.lua). The environment is exactly `env`: nothing leaks in from
 * the test process.
 */
export async function runPolicy(
  file: "init.lua" | "tsa_init.lua",
  env: Record<string, string>,
  steps: string[] = [],
  harnessEnv: Record<string, string> = {},
): Promise<HarnessOutput> {
  const mode = file === "init.lua" ? "kumod" : "tsa";
  const result = await execa(LUA, [runner, path.join(policyDir, file), mode, ...steps], {
    // PATH only lets the OS find lua5.4; the policy never reads it.
    env: { ...env, ...harnessEnv, HARNESS_POLICY_DIR: policyDir, PATH: process.env.PATH ?? "/usr/bin:/bin" },
    extendEnv: false,
    reject: false,
  });
  assertToolRan(result, LUA);
  if (result.exitCode === 2 || result.stdout.trim() === "") {
    throw new Error(`harness failed (exit ${result.exitCode}): ${result.stderr}`);
  }
  return { ...(JSON.parse(result.stdout) as Omit<HarnessOutput, "exitCode">), exitCode: result.exitCode ?? -1 };
}

/** Turns "spawn lua5.4 ENOENT" into an instruction. */
export function assertToolRan(result: { code?: string }, tool: string): void {
  if (result.code === "ENOENT") {
    throw new Error(`${tool} is not installed: run .ci/install-system.sh (Debian packages lua5.4 and lua-check)`);
  }
}

export function callsOf(output: HarnessOutput, fn: string): Call[] {
  return output.calls.filter((c) => c.fn === fn);
}

export function onlyCall(output: HarnessOutput, fn: string): Call {
  const calls = callsOf(output, fn);
  if (calls.length !== 1) throw new Error(`expected exactly one ${fn} call, got ${calls.length}`);
  return calls[0] as Call;
}

export function step(output: HarnessOutput, index: number): StepResult {
  const s = output.results[index];
  if (!s) throw new Error(`no result for step ${index}; policy error: ${output.error ?? "none"}`);
  return s;
}
