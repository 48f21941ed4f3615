/**
 * The base URLs of the HTTP APIs the tools talk to (kumod, the sink), whether from a flag or the environment: a
 * wrong one is a usage error (exit 2) that says where it came from and what it should look like.
 */
import { CliError, EXIT } from "./exit-codes.ts";
import type { SinkBadPortError } from "./sink-api.ts";

export interface ApiUrlSource {
  /** Who listens there, for messages: "kumod", "sink". */
  api: string;
  /** The tool's option for it, if the tool has one. */
  flag?: string;
  env: string;
  example: string;
}

export const KUMOD_API: ApiUrlSource = {
  api: "kumod",
  flag: "--url",
  env: "KUMO_HTTP_URL",
  example: "http://localhost:8000",
};
export const SINK_API: ApiUrlSource = {
  api: "sink",
  flag: "--sink-url",
  env: "SINK_HTTP_URL",
  example: "http://localhost:8025",
};

/** Pure: why `text` is not a plain http://host[:port] URL, or undefined when it is one. */
export function httpUrlProblem(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return "is not a URL";
  }
  if (url.protocol !== "http:") return "does not start with http:// (the APIs here speak plain HTTP)";
  return undefined;
}

/** The URL, or a usage error naming both places it can come from. */
export function apiBaseUrl(text: string, source: ApiUrlSource): URL {
  const problem = httpUrlProblem(text);
  if (problem !== undefined) {
    throw new CliError(
      EXIT.usage,
      `${source.api} URL "${text}" ${problem}`,
      `Set ${source.flag ? `${source.flag} (or ${source.env}, e.g. in .env)` : `${source.env} (e.g. in .env)`} like ${source.example}.`,
    );
  }
  return new URL(text);
}

/** A sink port fetch refuses is a setting to change, not a server to start: a usage error. */
export function sinkBadPortError(err: SinkBadPortError): CliError {
  return new CliError(
    EXIT.usage,
    err.message,
    "Serve the sink's HTTP API on another local port (SINK_HTTP_PORT for `npm run sink`; `tilt up` forwards 8025) " +
      "and set --sink-url or SINK_HTTP_URL to it.",
  );
}
