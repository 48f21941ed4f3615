import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parse } from "dotenv";

/** The repo root is two levels above scripts/lib/, whatever the caller's working directory. */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

export const DEFAULTS = {
  KUMO_HTTP_URL: "http://localhost:8000",
  SINK_HTTP_URL: "http://localhost:8025",
  TSA_HTTP_URL: "http://localhost:8008",
  KUMOMTA_NAMESPACE: "kumomta",
} as const;

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
): ToolEnv {
  const pick = (name: string): string | undefined => {
    const v = processVars[name] ?? fileVars[name];
    return v === undefined || v === "" ? undefined : v;
  };
  return {
    kumoUrl: pick("KUMO_HTTP_URL") ?? DEFAULTS.KUMO_HTTP_URL,
    kumoUser: pick("KUMO_HTTP_USER"),
    kumoPassword: pick("KUMO_HTTP_PASSWORD"),
    sinkUrl: pick("SINK_HTTP_URL") ?? DEFAULTS.SINK_HTTP_URL,
    tsaUrl: pick("TSA_HTTP_URL") ?? DEFAULTS.TSA_HTTP_URL,
    namespace: pick("KUMOMTA_NAMESPACE") ?? DEFAULTS.KUMOMTA_NAMESPACE,
    envFile,
    envFileFound,
  };
}

export function loadToolEnv(root: string = REPO_ROOT): ToolEnv {
  const envFile = join(root, ".env");
  const found = existsSync(envFile);
  const fileVars = found ? parse(readFileSync(envFile)) : {};
  return resolveToolEnv(fileVars, process.env, envFile, found);
}
