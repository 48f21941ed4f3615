/**
 * npm run seed: generates the credentials kumomta-tilt needs (kumod HTTP basic auth, Dragonfly password) into the
 * gitignored .env and k8s/overlays/local/secrets/. Idempotent; never prints a credential.
 */
import { chmod, readFile, rename, rm, writeFile } from "node:fs/promises";
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
const LOCK_WAIT_MS = 10_000;

const HELP = `Usage: npm run seed -- [--rotate] [--json] [--quiet]

Generates the HTTP injection credentials and the Dragonfly password with a CSPRNG into
  .env                            (KUMO_HTTP_USER, KUMO_HTTP_PASSWORD and the tools' URLs)
  k8s/overlays/local/secrets/     (read by the local overlay's secretGenerator)
Both are gitignored and written with mode 0600. Existing credentials are kept, so running it again is safe.
Credential values are never printed.

Options:
  --rotate   generate new credentials even if some exist (then run \`tilt up\` so the cluster follows)
  --json     print what was done as JSON (on failure: {exit_code, error})
  --quiet    print nothing on success
  --help     show this help

Exit codes:
${exitCodeTable([EXIT.ok, EXIT.internal, EXIT.usage, EXIT.filesNotWritable, EXIT.lockBusy])}
`;

type FileAction = "created" | "updated" | "unchanged";

const REL_SECRETS = relative(REPO_ROOT, SECRETS_DIR);
const OWNERSHIP_HINT =
  `Check that you own .env and ${REL_SECRETS}/ and can write to them (e.g. they were not created by root: ` +
  `\`sudo chown -R "$USER" .env ${REL_SECRETS}\`), then rerun.`;
const FS_REASONS: Record<string, string> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  ENOSPC: "no space left on the device",
  ENOTDIR: "a parent is not a directory",
  EISDIR: "is a directory",
};

const VERBS: Record<string, string> = { mkdir: "create", chmod: "change the mode of", rename: "replace" };

/** A failed file operation as the user should see it: which path, what went wrong, and what state it left. */
function fileError(err: NodeJS.ErrnoException): CliError {
  const raw = err.path ?? "";
  const tmp = `.${process.pid}.tmp`;
  // The lock or a temporary file failing means their directory refuses new files.
  let what: string;
  if (raw === LOCK_DIR) what = `write in ${REL_SECRETS}/`;
  else if (raw.endsWith(tmp)) what = `write ${relative(REPO_ROOT, raw.slice(0, -tmp.length))}`;
  else what = `${VERBS[err.syscall ?? ""] ?? "read"} ${raw === "" ? "a credentials file" : relative(REPO_ROOT, raw)}`;
  const code = err.code ?? "error";
  const state =
    err.syscall === "rename"
      ? "some files may already hold new credentials: rerun once fixed and seed makes them agree"
      : "no credential was changed";
  return new CliError(
    EXIT.filesNotWritable,
    `cannot ${what}: ${FS_REASONS[code] ?? err.message} (${code}); ${state}`,
    OWNERSHIP_HINT,
  );
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

interface PlannedFile {
  path: string;
  content: string;
  previous: string | undefined;
}

/**
 * Writes every file through a temporary one next to it, all temporaries first: if any cannot be written, they are
 * removed and no file has changed, so .env and the Secret files never disagree. The renames then swap them in.
 */
async function writeAllPrivate(planned: PlannedFile[]): Promise<FileAction[]> {
  const pending: { tmp: string; path: string }[] = [];
  try {
    for (const f of planned) {
      if (f.previous === f.content) {
        await chmod(f.path, 0o600);
        continue;
      }
      const tmp = `${f.path}.${process.pid}.tmp`;
      pending.push({ tmp, path: f.path });
      await writeFile(tmp, f.content, { mode: 0o600 });
      await chmod(tmp, 0o600);
    }
  } catch (err) {
    await Promise.all(pending.map((p) => rm(p.tmp, { force: true })));
    throw err;
  }
  try {
    for (const p of pending) await rename(p.tmp, p.path);
  } catch (err) {
    await Promise.all(pending.map((p) => rm(p.tmp, { force: true })));
    throw err;
  }
  return planned.map((f) =>
    f.previous === f.content ? "unchanged" : f.previous === undefined ? "created" : "updated",
  );
}

/** Reads what exists, decides, writes. Runs under the lock. */
async function seed(rotate: boolean) {
  const envText = await readIfExists(ENV_FILE);
  const secretFiles: Partial<Record<SecretFile, string>> = {};
  const previous: Partial<Record<SecretFile, string>> = {};
  for (const file of Object.keys(SECRET_FILES) as SecretFile[]) {
    const content = await readIfExists(join(SECRETS_DIR, file));
    previous[file] = content;
    if (content !== undefined) secretFiles[file] = content.trim();
  }
  const plan = planCredentials(parseEnv(envText ?? ""), secretFiles, rotate);

  await chmod(SECRETS_DIR, 0o700);
  const contents = secretFileContents(plan.credentials);
  const planned: PlannedFile[] = (Object.keys(contents) as SecretFile[]).map((file) => ({
    path: join(SECRETS_DIR, file),
    content: contents[file],
    previous: previous[file],
  }));
  planned.push({ path: ENV_FILE, content: mergeEnv(envText ?? "", plan.credentials), previous: envText });
  const actions = await writeAllPrivate(planned);
  const files: Record<string, FileAction> = {};
  planned.forEach((f, i) => {
    files[relative(REPO_ROOT, f.path)] = actions[i] as FileAction;
  });
  return { plan, files, envExisted: envText !== undefined };
}

/**
 * Serialises concurrent runs (Tilt and a test run both seeding a fresh clone): without it two runs could each
 * generate a password and leave .env and the Secret files disagreeing.
 */
async function seedLocked(rotate: boolean) {
  try {
    return await withDirLock(LOCK_DIR, { staleMs: LOCK_STALE_MS, waitMs: LOCK_WAIT_MS }, () => seed(rotate));
  } catch (err) {
    if (err instanceof LockBusyError) {
      const lock = relative(REPO_ROOT, LOCK_DIR);
      throw new CliError(
        EXIT.lockBusy,
        `another seed run has held ${lock} for more than ${LOCK_WAIT_MS / 1000} s; no credential was changed`,
        "Another `npm run seed` is still running (`tilt up` runs one): let it finish, then rerun. If none is " +
          `running, the lock was left by a killed run: it is taken over once ${LOCK_STALE_MS / 1000} s old, or remove ${lock}.`,
      );
    }
    if ((err as NodeJS.ErrnoException).syscall !== undefined) throw fileError(err as NodeJS.ErrnoException);
    throw err;
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
