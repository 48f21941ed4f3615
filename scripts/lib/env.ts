import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "dotenv";
import { parse as parseYaml } from "yaml";
import { ENV_DEFAULTS } from "./credentials.ts";

/** The repo root is two levels above scripts/lib/, whatever the caller's working directory. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** The namespace is written once, in the overlay Tilt deploys; the tools follow it. */
export function overlayNamespace(root: string = REPO_ROOT): string {
  const kustomization = parseYaml(readFileSync(join(root, "k8s/overlays/local/kustomization.yaml"), "utf8"));
  return kustomization.namespace;
}

export interface ToolEnv {
  kumoUrl: string;
  kumoUser?: string;
  kumoPassword?: string;
  sinkUrl: string;
  tsaUrl: string;
  namespace: string;
  envFile: string;
  envFileFound: boolean;
}

/** Pure: process environment wins over the .env file, which wins over built-in defaults. */
export function resolveToolEnv(
  fileVars: Record<string, string>,
  processVars: Record<string, string | undefined>,
  envFile: string,
  envFileFound: boolean,
  defaultNamespace: string,
): ToolEnv {
  const pick = (name: string): string | undefined => {
    const v = processVars[name] ?? fileVars[name];
    return v === undefined || v === "" ? undefined : v;
  };
  return {
    kumoUrl: pick("KUMO_HTTP_URL") ?? ENV_DEFAULTS.KUMO_HTTP_URL,
    kumoUser: pick("KUMO_HTTP_USER"),
    kumoPassword: pick("KUMO_HTTP_PASSWORD"),
    sinkUrl: pick("SINK_HTTP_URL") ?? ENV_DEFAULTS.SINK_HTTP_URL,
    tsaUrl: pick("TSA_HTTP_URL") ?? ENV_DEFAULTS.TSA_HTTP_URL,
    namespace: pick("KUMOMTA_NAMESPACE") ?? defaultNamespace,
    envFile,
    envFileFound,
  };
}

export function loadToolEnv(root: string = REPO_ROOT): ToolEnv {
  const envFile = join(root, ".env");
  const found = existsSync(envFile);
  const fileVars = found ? parse(readFileSync(envFile)) : {};
  return resolveToolEnv(fileVars, process.env, envFile, found, overlayNamespace(root));
}
