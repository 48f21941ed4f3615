import { type ParseArgsConfig, parseArgs } from "node:util";
import { CliError, EXIT, type ExitCode } from "./exit-codes.ts";

/**
 * Runs a script's main(), turning CliErrors into "error:/hint:" lines and exit codes. With `jsonErrors`, a CliError
 * is also printed on stdout as `{exit_code, error}`, so machines reading --json get the failure too.
 */
export function runMain(main: () => Promise<ExitCode>, opts: { jsonErrors?: boolean } = {}): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof CliError) {
        process.stderr.write(`error: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ""}`);
        if (opts.jsonErrors) {
          const error = { message: err.message, hint: err.hint ?? "" };
          process.stdout.write(`${JSON.stringify({ exit_code: err.exitCode, error })}\n`);
        }
        process.exitCode = err.exitCode;
        return;
      }
      process.stderr.write(`internal error: ${(err as Error).stack ?? String(err)}\n`);
      process.exitCode = EXIT.internal;
    },
  );
}

export function usageError(message: string, script: string): CliError {
  return new CliError(EXIT.usage, message, `Run \`npm run ${script} -- --help\` for the options.`);
}

/** node:util's parseArgs, with a mistake on the command line reported as a usage error (exit 2) that points at --help. */
export function parseCliArgs<const T extends ParseArgsConfig>(
  script: string,
  config: T,
): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (err) {
    throw usageError((err as Error).message, script);
  }
}

/** The options of the tools that look at one namespace of the cluster (status, doctor). */
const NAMESPACE_TOOL_OPTIONS = {
  json: { type: "boolean" },
  namespace: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** Parses the command line of status or doctor; prints `help` and returns null for --help. */
export function parseNamespaceToolArgs(script: string, help: string) {
  const { values } = parseCliArgs(script, { args: process.argv.slice(2), options: NAMESPACE_TOOL_OPTIONS });
  if (!values.help) return values;
  process.stdout.write(help);
  return null;
}
