import { type ParseArgsConfig, parseArgs } from "node:util";
import { CliError, EXIT, type ExitCode } from "./exit-codes.ts";

/** Whether the command line asks for --json (options only: a "--json" after "--" is an argument). */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf("--");
  return (end < 0 ? argv : argv.slice(0, end)).includes("--json");
}

/** What a failed run prints with --json: the tool's findings so far, then exit_code and error, on one line. */
export function failureJson(err: CliError): string {
  const error = { message: err.message, hint: err.hint ?? "" };
  return `${JSON.stringify({ ...err.data, exit_code: err.exitCode, error })}\n`;
}

/**
 * Runs a script's main(), turning a thrown CliError into "error:/hint:" lines on stderr and its exit code. Every
 * tool fails the same way for machines too: with --json on the command line, stdout gets one JSON object with at
 * least exit_code and error ({message, hint}), also for a bad option or an internal error.
 */
export function runMain(main: () => Promise<ExitCode>): void {
  const json = wantsJson(process.argv.slice(2));
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (thrown: unknown) => {
      const err =
        thrown instanceof CliError
          ? thrown
          : new CliError(
              EXIT.internal,
              `internal error: ${(thrown as Error).stack ?? String(thrown)}`,
              "This is a bug in kumomta-tilt: please report it with the command you ran.",
            );
      process.stderr.write(`error: ${err.message}\n${err.hint ? `hint: ${err.hint}\n` : ""}`);
      if (json) process.stdout.write(failureJson(err));
      process.exitCode = err.exitCode;
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
