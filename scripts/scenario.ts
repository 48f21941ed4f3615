import chalk from "chalk";
import { parseCliArgs, runMain, usageError } from "./lib/cli.ts";
import { loadToolEnv } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import { getScenario, putScenario, SinkBadPortError, SinkHttpError, SinkUnreachableError } from "./lib/sink-api.ts";
import { apiBaseUrl, SINK_API, sinkBadPortError } from "./lib/urls.ts";

const HELP = `Usage: npm run scenario -- [NAME] [--json] [--sink-url URL]

Without NAME: prints the sink's active scenario and the available ones.
With NAME: switches the sink to that scenario (PUT /api/scenario), effective for the next SMTP commands.

Options:
  --sink-url URL   sink HTTP API [SINK_HTTP_URL, default http://localhost:8025]
  --json           print the sink's answer as JSON (on failure: {exit_code, error})
  -h, --help       this text

Examples:
  npm run scenario                       # current + available
  npm run scenario -- realistic          # deferrals and bounces with real providers' texts
  npm run scenario -- accept-all          # accept everything, address directives too
  npm run scenario -- directives          # the default: accept all but what tempfail/permfail/NNN- addresses ask

Exit codes:
${exitCodeTable([EXIT.ok, EXIT.usage, EXIT.sinkUnreachable, EXIT.unknownScenario, EXIT.commandFailed])}
  (2 also: a sink URL that is not http://, or whose port fetch refuses; 19 here: the sink answered with
  another error, shown)
`;

function sinkError(err: unknown, url: string, available?: string[]): CliError {
  if (err instanceof SinkBadPortError) return sinkBadPortError(err);
  if (err instanceof SinkUnreachableError) {
    return new CliError(
      EXIT.sinkUnreachable,
      err.message,
      "Is `tilt up` running with its port-forward to sink:8025 (or `npm run sink` locally)? Set SINK_HTTP_URL or --sink-url otherwise.",
    );
  }
  if (err instanceof SinkHttpError && err.status === 404) {
    return new CliError(
      EXIT.unknownScenario,
      `the sink at ${url} has no such scenario: ${err.body.trim()}`,
      available ? `Available: ${available.join(", ")}` : undefined,
    );
  }
  return new CliError(
    EXIT.commandFailed,
    (err as Error).message,
    `Is ${url} the sink's HTTP API (\`npm run sink\` or the port-forward of \`tilt up\`)? See the sink's logs.`,
  );
}

async function main(): Promise<ExitCode> {
  const { values, positionals } = parseCliArgs("scenario", {
    args: process.argv.slice(2),
    allowPositionals: true,
    options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" }, "sink-url": { type: "string" } },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  if (positionals.length > 1) throw usageError(`one scenario name at most, got ${positionals.join(" ")}`, "scenario");
  const url = values["sink-url"] ?? loadToolEnv().sinkUrl;
  apiBaseUrl(url, SINK_API);
  let current: Awaited<ReturnType<typeof getScenario>>;
  try {
    current = await getScenario(url);
  } catch (err) {
    throw sinkError(err, url);
  }
  const name = positionals[0];
  if (name === undefined) {
    if (values.json) process.stdout.write(`${JSON.stringify({ name: current.name, available: current.available })}\n`);
    else {
      process.stdout.write(`active scenario: ${chalk.cyan(current.name)}\n`);
      process.stdout.write(
        `available: ${current.available.map((a) => (a === current.name ? chalk.cyan(a) : a)).join(", ")}\n`,
      );
    }
    return EXIT.ok;
  }
  if (!current.available.includes(name)) {
    throw new CliError(
      EXIT.unknownScenario,
      `unknown scenario "${name}"`,
      `Available: ${current.available.join(", ")}`,
    );
  }
  let next: Awaited<ReturnType<typeof putScenario>>;
  try {
    next = await putScenario(url, name);
  } catch (err) {
    throw sinkError(err, url, current.available);
  }
  if (values.json)
    process.stdout.write(
      `${JSON.stringify({ name: next.name, previous: current.name, available: next.available ?? current.available })}\n`,
    );
  else process.stdout.write(`scenario: ${current.name} -> ${chalk.cyan(next.name)}\n`);
  return EXIT.ok;
}

runMain(main);
