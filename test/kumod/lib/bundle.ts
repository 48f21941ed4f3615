/**
 * Where the binaries under test come from: KUMOD_BIN, TSA_DAEMON_BIN, PROXY_SERVER_BIN and KUMOMTA_SHARE (KumoMTA's
 * share/ directory: policy-extras, community, bounce_classifier), each defaulting to where KumoMTA's Linux packages
 * install it under /opt/kumomta; COREDNS_BIN, defaulting to the build of .ci/install-tools.sh.
 */
import { access, constants } from "node:fs/promises";
import path from "node:path";

const repoRoot = path.resolve(import.meta.dirname, "../../..");

export interface Bundle {
  /** CoreDNS, the image of mx-dns (and our stand-in for the cluster DNS); built by .ci/install-tools.sh. */
  coredns: string;
  kumod: string;
  tsaDaemon: string;
  proxyServer: string;
  share: string;
}

export function bundleFromEnv(env: NodeJS.ProcessEnv = process.env): Bundle {
  return {
    coredns: env.COREDNS_BIN || path.join(repoRoot, ".tools/bin/coredns"),
    kumod: env.KUMOD_BIN || "/opt/kumomta/sbin/kumod",
    tsaDaemon: env.TSA_DAEMON_BIN || "/opt/kumomta/sbin/tsa-daemon",
    proxyServer: env.PROXY_SERVER_BIN || "/opt/kumomta/sbin/proxy-server",
    share: env.KUMOMTA_SHARE || "/opt/kumomta/share",
  };
}

/** Problems with a bundle, each naming the variable that fixes it; empty when everything is there. */
export async function bundleProblems(b: Bundle): Promise<string[]> {
  const problems: string[] = [];
  const check = async (path: string, mode: number, variable: string) => {
    try {
      await access(path, mode);
    } catch {
      problems.push(`${path} is missing (set ${variable})`);
    }
  };
  await check(b.kumod, constants.X_OK, "KUMOD_BIN");
  await check(b.tsaDaemon, constants.X_OK, "TSA_DAEMON_BIN");
  await check(b.proxyServer, constants.X_OK, "PROXY_SERVER_BIN");
  await check(`${b.share}/policy-extras/shaping.lua`, constants.R_OK, "KUMOMTA_SHARE");
  await check(b.coredns, constants.X_OK, "COREDNS_BIN, or run .ci/install-tools.sh");
  return problems;
}
