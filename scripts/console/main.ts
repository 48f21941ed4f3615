import type { AddressInfo } from "node:net";
import { parseCliArgs, runMain, usageError } from "../lib/cli.ts";
import { loadToolEnv, type ToolEnv } from "../lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "../lib/exit-codes.ts";
import type { KumodTargets } from "./collect.ts";
import { Poller } from "./poller.ts";
import { buildPage, createConsoleServer } from "./server.ts";

const HELP = `Usage: npm run console -- [--kumod URL[,URL...] | --kumod-dns HOST:PORT] [--tsa URL] [--sink URL]
                           [--host HOST] [--port PORT] [--interval MS]

A live web page of the whole pipeline: injection and delivery rates, every kumod pod's queues and counters,
destinations, TSA suspensions and overrides, and the sink (with a scenario switch). Tilt runs it inside the
cluster (resource "console", http://localhost:8090); this runs it on your machine against any endpoints.

kumod only serves /metrics to trusted peers, so give it loopback port-forwards (one per pod) or run it in the
cluster, where --kumod-dns finds every pod through the headless Service.

Options:
  --kumod URL,...        kumod pods' HTTP base URLs [CONSOLE_KUMOD, else KUMO_HTTP_URL, default http://localhost:8000]
  --kumod-dns HOST:PORT  find the pods as every address of HOST (e.g. kumod-headless:8000) [CONSOLE_KUMOD_DNS]
  --tsa URL              tsa-daemon's HTTP API [CONSOLE_TSA, else TSA_HTTP_URL, default http://localhost:8008]
  --sink URL             the sink's HTTP API [CONSOLE_SINK, else SINK_HTTP_URL, default http://localhost:8025]
  --host HOST            address to listen on [CONSOLE_HOST, default 127.0.0.1]
  --port PORT            port to listen on, 0 for any free one [CONSOLE_PORT, default 8090]
  --interval MS          how often every source is read, 200 to 2000 [CONSOLE_INTERVAL_MS, default 1000]
  -h, --help             this text

It runs until interrupted. Exit codes:
${exitCodeTable([EXIT.ok, EXIT.usage, EXIT.commandFailed])}
  (19: the port could not be opened)
`;

function baseUrl(value: string, option: string): string {
  try {
    const url = new URL(value);
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new Error("not http");
    return url.href;
  } catch {
    throw usageError(`${option} ${JSON.stringify(value)} is not an http:// URL`, "console");
  }
}

function integer(value: string, option: string, min: number, max: number): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw usageError(`${option} must be a whole number from ${min} to ${max}, got ${JSON.stringify(value)}`, "console");
  return n;
}

function kumodTargets(urls: string | undefined, dns: string | undefined, env: () => ToolEnv): KumodTargets {
  if (urls !== undefined && dns !== undefined) throw usageError("give --kumod or --kumod-dns, not both", "console");
  if (dns !== undefined) {
    const m = /^([A-Za-z0-9.-]+):(\d+)$/.exec(dns);
    if (!m)
      throw usageError(`--kumod-dns ${JSON.stringify(dns)} must be HOST:PORT, e.g. kumod-headless:8000`, "console");
    return { kind: "dns", host: m[1] as string, port: integer(m[2] as string, "--kumod-dns port", 1, 65535) };
  }
  const list = (urls ?? env().kumoUrl)
    .split(",")
    .map((u) => u.trim())
    .filter((u) => u !== "");
  if (list.length === 0) throw usageError("--kumod needs at least one URL", "console");
  return { kind: "urls", urls: list.map((u) => baseUrl(u, "--kumod")) };
}

async function main(): Promise<ExitCode> {
  const { values } = parseCliArgs("console", {
    args: process.argv.slice(2),
    options: {
      kumod: { type: "string" },
      "kumod-dns": { type: "string" },
      tsa: { type: "string" },
      sink: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      interval: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  // The tools' .env and overlay are read only when a setting is missing: the image has neither.
  let toolEnv: ToolEnv | undefined;
  const env = () => {
    toolEnv ??= loadToolEnv();
    return toolEnv;
  };
  const e = process.env;
  const fromFlagOrEnv = (flag: string | undefined, name: string) => flag ?? (e[name] || undefined);
  const kumod = kumodTargets(
    fromFlagOrEnv(values.kumod, "CONSOLE_KUMOD"),
    fromFlagOrEnv(values["kumod-dns"], "CONSOLE_KUMOD_DNS"),
    env,
  );
  const tsaUrl = baseUrl(fromFlagOrEnv(values.tsa, "CONSOLE_TSA") ?? env().tsaUrl, "--tsa");
  const sinkUrl = baseUrl(fromFlagOrEnv(values.sink, "CONSOLE_SINK") ?? env().sinkUrl, "--sink");
  const host = fromFlagOrEnv(values.host, "CONSOLE_HOST") ?? "127.0.0.1";
  const port = integer(fromFlagOrEnv(values.port, "CONSOLE_PORT") ?? "8090", "--port", 0, 65535);
  const intervalMs = integer(fromFlagOrEnv(values.interval, "CONSOLE_INTERVAL_MS") ?? "1000", "--interval", 200, 2000);

  const page = await buildPage();
  const poller = new Poller({ kumod, tsaUrl, sinkUrl, intervalMs });
  const server = createConsoleServer(page, poller);
  await new Promise<void>((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) =>
      reject(
        new CliError(
          EXIT.commandFailed,
          `cannot listen on ${host}:${port}: ${err.code ?? err.message}`,
          err.code === "EADDRINUSE"
            ? "Another program (perhaps Tilt's port-forward of the in-cluster console) has that port: pick another with --port."
            : "Check --host: it must be an address of this machine.",
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  poller.start();
  const address = server.address() as AddressInfo;
  const shown = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const pods = kumod.kind === "dns" ? `every address of ${kumod.host}:${kumod.port}` : kumod.urls.join(", ");
  process.stdout.write(
    `console listening on http://${shown}:${address.port}/ (kumod: ${pods}; tsa: ${tsaUrl}; sink: ${sinkUrl})\n`,
  );
  await new Promise<void>((resolve) => {
    const stop = () => {
      poller.stop();
      server.close(() => resolve());
      server.closeAllConnections();
    };
    process.once("SIGTERM", stop);
    process.once("SIGINT", stop);
  });
  return EXIT.ok;
}

runMain(main);
