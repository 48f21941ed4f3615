/**
 * `npm run test:kumod`: the policy and manifests judged by real KumoMTA binaries. Checks what the tier needs and
 * says in one line what is missing, then runs vitest inside a new, empty network namespace: the pods' bridge lives
 * there, and with no interface to the outside and no route, nothing the run starts can reach another address.
 */
import { execa } from "execa";
import { bundleFromEnv, bundleProblems } from "./lib/bundle.ts";

const HOW_TO_GET =
  "install KumoMTA's package (binaries in /opt/kumomta) or point KUMOD_BIN, TSA_DAEMON_BIN, PROXY_SERVER_BIN and " +
  "KUMOMTA_SHARE at a build (see docs/testing.md)";
const TOOLS: [string, string][] = [
  ["ip", "Debian package iproute2"],
  ["unshare", "Debian package util-linux"],
  ["nsenter", "Debian package util-linux"],
  ["ss", "Debian package iproute2"],
  ["sysctl", "Debian package procps"],
  ["redis-server", "Debian package redis-server"],
  ["redis-cli", "Debian package redis-tools"],
  ["kubectl", "https://kubernetes.io/docs/tasks/tools/"],
];

async function main(): Promise<number> {
  const bundle = bundleFromEnv();
  const problems = await bundleProblems(bundle);
  if (problems.length > 0) {
    console.error(`test:kumod: no KumoMTA binaries: ${problems.join("; ")}. To get them, ${HOW_TO_GET}.`);
    return 3;
  }
  if (process.getuid?.() !== 0) {
    console.error("test:kumod: must run as root: it creates network and mount namespaces (sudo npm run test:kumod).");
    return 3;
  }
  for (const [tool, from] of TOOLS) {
    if ((await execa("sh", ["-c", `command -v ${tool}`], { reject: false })).exitCode !== 0) {
      console.error(`test:kumod: ${tool} is not installed (${from}).`);
      return 3;
    }
  }
  const vitest = ["node_modules/.bin/vitest", "run", "--config", "vitest.kumod.config.ts", ...process.argv.slice(2)];
  const run = await execa(
    "unshare",
    ["--net", "--fork", "--kill-child", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", ...vitest],
    { stdio: "inherit", reject: false, env: { ...bundleEnv(bundle) } },
  );
  return run.exitCode ?? 1;
}

const bundleEnv = (b: ReturnType<typeof bundleFromEnv>) => ({
  COREDNS_BIN: b.coredns,
  KUMOD_BIN: b.kumod,
  TSA_DAEMON_BIN: b.tsaDaemon,
  PROXY_SERVER_BIN: b.proxyServer,
  KUMOMTA_SHARE: b.share,
});

process.exitCode = await main();
