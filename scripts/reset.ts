import { createInterface } from "node:readline/promises";
import { execa } from "execa";
import { parseCliArgs, runMain } from "./lib/cli.ts";
import { confirmationDecision } from "./lib/confirm.ts";
import { loadToolEnv, REPO_ROOT } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";
import { findTilt, kubectlOk } from "./lib/kubectl.ts";

const PART_OF = "app.kubernetes.io/part-of=kumomta-tilt";

const HELP = `Usage: npm run reset -- [--yes] [--namespace NS]

Deletes everything kumomta-tilt put in the cluster, including queued mail:
  1. \`tilt down\` (skipped with a note when tilt is not on PATH)
  2. the kumod spool PVCs (label ${PART_OF}), waiting until they are gone
  3. the namespace, waiting until it is gone
Asks for confirmation on a terminal. Scripts and CI must pass --yes.

Options:
  --yes, -y        do not ask
  --namespace NS   Kubernetes namespace [KUMOMTA_NAMESPACE, default kumomta]
  -h, --help       this text

Exit codes:
${exitCodeTable([EXIT.ok, EXIT.usage, EXIT.kubectlMissing, EXIT.clusterUnreachable, EXIT.confirmationRequired, EXIT.commandFailed])}
`;

const step = (text: string) => process.stdout.write(`==> ${text}\n`);

async function main(): Promise<ExitCode> {
  const { values } = parseCliArgs("reset", {
    args: process.argv.slice(2),
    options: {
      yes: { type: "boolean", short: "y" },
      namespace: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }
  const ns = values.namespace ?? loadToolEnv().namespace;
  const decision = confirmationDecision(values.yes ?? false, Boolean(process.stdin.isTTY && process.stdout.isTTY));
  if (decision === "refuse") {
    throw new CliError(
      EXIT.confirmationRequired,
      `reset deletes namespace ${ns} and its spool PVCs (all queued mail); there is no terminal to confirm on`,
      "Pass --yes to confirm: `npm run reset -- --yes`.",
    );
  }
  // Fail on a missing kubectl or an unreachable cluster before asking anything.
  const context = (await kubectlOk(["config", "current-context"])).trim();
  await kubectlOk(["get", "--raw", "/readyz", "--request-timeout=10s"]);

  if (decision === "ask") {
    const rl = createInterface({ input: process.stdin, output: process.stdout });
    const answer = await rl.question(`Delete namespace ${ns} and all queued mail in context ${context}? [y/N] `);
    rl.close();
    if (!/^y(es)?$/i.test(answer.trim())) {
      process.stdout.write("nothing deleted\n");
      return EXIT.confirmationRequired;
    }
  }

  const tilt = await findTilt();
  if (tilt) {
    step("tilt down");
    const r = await execa(tilt, ["down"], { cwd: REPO_ROOT, reject: false, stdio: ["ignore", "inherit", "inherit"] });
    if (r.exitCode !== 0)
      throw new CliError(
        EXIT.commandFailed,
        `tilt down failed (exit ${r.exitCode})`,
        "Fix the Tiltfile error above, or delete by hand with kubectl.",
      );
  } else {
    step("tilt not on PATH: skipping `tilt down` (Tilt installs from https://docs.tilt.dev/install.html)");
    // Without `tilt down` the pods still hold their claims (kubernetes.io/pvc-protection), so deleting the PVCs would
    // wait out its timeout: the workloads go first, and foreground deletion waits until their pods are gone.
    step(`deleting workloads (${PART_OF}) in ${ns}`);
    process.stdout.write(
      await kubectlOk(
        [
          ...["delete", "statefulset,deployment,job", "-n", ns, "-l", PART_OF],
          ...["--cascade=foreground", "--wait", "--ignore-not-found", "--timeout=330s"],
        ],
        350_000,
      ),
    );
  }

  step(`deleting spool PVCs (${PART_OF}) in ${ns}`);
  process.stdout.write(
    await kubectlOk(
      ["delete", "pvc", "-n", ns, "-l", PART_OF, "--wait", "--ignore-not-found", "--timeout=330s"],
      350_000,
    ),
  );
  step(`deleting namespace ${ns}`);
  process.stdout.write(
    await kubectlOk(["delete", "namespace", ns, "--wait", "--ignore-not-found", "--timeout=300s"], 320_000),
  );
  step("done: `tilt up` starts from scratch");
  return EXIT.ok;
}

runMain(main);
