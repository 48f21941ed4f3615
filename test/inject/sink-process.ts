import { resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { ROOT } from "./run-inject.ts";

export interface RunningSink {
  smtpPort: number;
  /** The bound SMTP port of each provider site asked for with SINK_SITE_PORTS in `env`. */
  sitePorts: Record<string, number>;
  httpUrl: string;
  stop(): Promise<void>;
}

/**
 * Starts the project's real sink (sink/src/main.ts) on ephemeral loopback ports and waits for its "listening" line;
 * without a scenario it runs the shipped rules file's default, as `npm run sink` does. `env` adds or overrides sink
 * settings (e.g. SINK_SITE_PORTS).
 */
export async function startSink(scenario?: string, env: Record<string, string> = {}): Promise<RunningSink> {
  const sinkDir = resolve(ROOT, "sink");
  const child: ResultPromise = execa("node", ["--import", "tsx", "src/main.ts"], {
    cwd: sinkDir,
    reject: false,
    env: {
      SINK_SMTP_PORT: "0",
      SINK_HTTP_PORT: "0",
      SINK_HOST: "127.0.0.1",
      SINK_LOG_CONNECTIONS: "false",
      ...(scenario === undefined ? {} : { SINK_SCENARIO: scenario }),
      ...env,
    },
  });
  const ports = await new Promise<{ smtp: number; http: number; sites: Record<string, number> }>(
    (resolvePorts, reject) => {
      let buffered = "";
      const timer = setTimeout(
        () => reject(new Error(`sink did not log "listening" within 20 s:\n${buffered}`)),
        20_000,
      );
      child.stdout?.on("data", (chunk: Buffer) => {
        buffered += chunk.toString();
        for (const line of buffered.split("\n")) {
          if (!line.startsWith("{")) continue;
          try {
            const rec = JSON.parse(line) as {
              msg?: string;
              smtp_port?: number;
              http_port?: number;
              site_ports?: Record<string, number>;
            };
            if (rec.msg === "listening" && rec.smtp_port && rec.http_port) {
              clearTimeout(timer);
              resolvePorts({ smtp: rec.smtp_port, http: rec.http_port, sites: rec.site_ports ?? {} });
            }
          } catch {
            // a partial line: wait for the rest
          }
        }
      });
      child.then((r) => {
        clearTimeout(timer);
        reject(new Error(`sink exited (${r.exitCode}) before listening:\n${r.stdout}\n${r.stderr}`));
      });
    },
  );
  return {
    smtpPort: ports.smtp,
    sitePorts: ports.sites,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    async stop() {
      child.kill("SIGTERM");
      await child;
    },
  };
}
