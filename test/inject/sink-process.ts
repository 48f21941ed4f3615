import { resolve } from "node:path";
import { execa, type ResultPromise } from "execa";
import { ROOT } from "./run-inject.ts";

export interface RunningSink {
  smtpPort: number;
  httpUrl: string;
  stop(): Promise<void>;
}

/** Starts the project's real sink (sink/src/main.ts) on ephemeral loopback ports and waits for its "listening" line. */
export async function startSink(scenario: string): Promise<RunningSink> {
  const sinkDir = resolve(ROOT, "sink");
  const child: ResultPromise = execa("node", ["--import", "tsx", "src/main.ts"], {
    cwd: sinkDir,
    reject: false,
    env: {
      SINK_SMTP_PORT: "0",
      SINK_HTTP_PORT: "0",
      SINK_HOST: "127.0.0.1",
      SINK_SCENARIO: scenario,
      SINK_LOG_CONNECTIONS: "false",
    },
  });
  const ports = await new Promise<{ smtp: number; http: number }>((resolvePorts, reject) => {
    let buffered = "";
    const timer = setTimeout(() => reject(new Error(`sink did not log "listening" within 20 s:\n${buffered}`)), 20_000);
    child.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (const line of buffered.split("\n")) {
        if (!line.startsWith("{")) continue;
        try {
          const rec = JSON.parse(line) as { msg?: string; smtp_port?: number; http_port?: number };
          if (rec.msg === "listening" && rec.smtp_port && rec.http_port) {
            clearTimeout(timer);
            resolvePorts({ smtp: rec.smtp_port, http: rec.http_port });
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
  });
  return {
    smtpPort: ports.smtp,
    httpUrl: `http://127.0.0.1:${ports.http}`,
    async stop() {
      child.kill("SIGTERM");
      await child;
    },
  };
}
