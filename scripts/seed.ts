/**
 * npm run seed: generates the credentials kumomta-tilt needs (kumod HTTP basic auth, Dragonfly password) into the
 * gitignored .env and k8s/overlays/local/secrets/. Idempotent; never prints a credential.
 */
import { chmod, mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join, relative } from "node:path";
import { parse as parseEnv } from "dotenv";
import { parseCliArgs, runMain } from "./lib/cli.ts";
import { mergeEnv, planCredentials, SECRET_FILES, type SecretFile, secretFileContents } from "./lib/credentials.ts";
import { LockBusyError, withDirLock } from "./lib/dir-lock.ts";
import { REPO_ROOT } from "./lib/env.ts";
import { CliError, EXIT, type ExitCode, exitCodeTable } from "./lib/exit-codes.ts";

const SECRETS_DIR = join(REPO_ROOT, "k8s/overlays/local/secrets");
const ENV_FILE = join(REPO_ROOT, ".env");
const LOCK_DIR = join(SECRETS_DIR, ".seed.lock");
/** Longer than any real run, so a lock this old was left by a killed process. */
const LOCK_STALE_MS = 30_000;

const HELP = `Usage: npm run seed -- [--rotate] [--json] [--quiet]

Generates the HTTP injection credentials and the Dragonfly password with a CSPRNG into
  .env                            (KUMO_HTTP_USER, KUMO_HTTP_PASSWORD and the tools' URLs)
  k8s/overlays/local/secrets/     (read by the local overlay's secretGenerator)
Both are gitignored and written with mode 0600. Existing credentials are kept, so running it again is safe.
Credential values are never printed.

Options:
  --rotate   generate new credentials even if some exist (then run \`tilt up\` so the cluster follows)
  --json     print what was done as JSON
  --quiet    print nothing on success
  --help     show this help

Exit codes:
${exitCodeTable([EXIT.ok, EXIT.internal, EXIT.usage])}
`;

type FileAction = "created" | "updated" | "unchanged";

const FILE_HINT = "Check that you own .env and k8s/overlays/local/secrets/ (e.g. not created by root), then rerun.";

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return undefined;
    throw new CliError(EXIT.internal, `cannot read ${relative(REPO_ROOT, path)} (${code})`, FILE_HINT);
  }
}

/** Writes through a temporary file so an interrupted run never leaves a half-written credential. */
async function writePrivate(path: string, content: string, previous: string | undefined): Promise<FileAction> {
  if (previous === content) {
    await chmod(path, 0o600);
    return "unchanged";
  }
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, content, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, path);
  return previous === undefined ? "created" : "updated";
}

/** Reads what exists, decides, writes. Runs under the lock. */
async function seed(rotate: boolean) {
  const envText = await readIfExists(ENV_FILE);
  const secretFiles: Partial<Record<SecretFile, string>> = {};
  for (const file of Object.keys(SECRET_FILES) as SecretFile[]) {
    const content = await readIfExists(join(SECRETS_DIR, file));
    if (content !== undefined) secretFiles[file] = content.trim();
  }
  const plan = planCredentials(parseEnv(envText ?? ""), secretFiles, rotate);

  await mkdir(SECRETS_DIR, { recursive: true });
  await chmod(SECRETS_DIR, 0o700);
  const files: Record<string, FileAction> = {};
  const contents = secretFileContents(plan.credentials);
  for (const file of Object.keys(contents) as SecretFile[]) {
    const path = join(SECRETS_DIR, file);
    files[relative(REPO_ROOT, path)] = await writePrivate(path, contents[file], await readIfExists(path));
  }
  files[relative(REPO_ROOT, ENV_FILE)] = await writePrivate(
    ENV_FILE,
    mergeEnv(envText ?? "", plan.credentials),
    envText,
  );

  return { plan, files, envExisted: envText !== undefined };
}

/**
 * Serialises concurrent runs (Tilt and a test run both seeding a fresh clone): without it two runs could each
 * generate a password and leave .env and the Secret files disagreeing.
 */
async function seedLocked(rotate: boolean) {
  try {
    return await withDirLock(LOCK_DIR, { staleMs: LOCK_STALE_MS, waitMs: 10_000 }, () => seed(rotate));
  } catch (err) {
    if (!(err instanceof LockBusyError)) throw err;
    throw new CliError(EXIT.internal, `another seed run holds ${relative(REPO_ROOT, LOCK_DIR)}`, FILE_HINT);
  }
}

async function main(): Promise<ExitCode> {
  const { values } = parseCliArgs("seed", {
    options: {
      rotate: { type: "boolean" },
      json: { type: "boolean" },
      quiet: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(HELP);
    return EXIT.ok;
  }

  const { plan, files, envExisted } = await seedLocked(values.rotate === true);
  const summary = { rotated: values.rotate === true, generated: plan.generated, kept: plan.kept, files };
  if (values.json) {
    process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  } else if (!values.quiet) {
    const lines = [
      plan.generated.length > 0
        ? `seed: generated ${plan.generated.join(", ")}${values.rotate ? " (rotated)" : ""}`
        : "seed: credentials already present, kept (use --rotate to replace them)",
      ...(plan.kept.length > 0 && plan.generated.length > 0 ? [`seed: kept ${plan.kept.join(", ")}`] : []),
      ...Object.entries(files).map(([file, action]) => `  ${action.padEnd(9)} ${file} (0600)`),
    ];
    if (plan.generated.length > 0 && envExisted)
      lines.push("seed: run `tilt up` (or let the running Tilt re-apply) so the cluster's Secrets follow");
    process.stdout.write(`${lines.join("\n")}\n`);
  }
  return EXIT.ok;
}

runMain(main);
