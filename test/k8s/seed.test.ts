import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parse as parseEnv } from "dotenv";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ENV_DEFAULTS,
  generateSecret,
  isUsable,
  mergeEnv,
  planCredentials,
  SECRET_FILES,
} from "../../scripts/lib/credentials.ts";
import { LockBusyError, withDirLock } from "../../scripts/lib/dir-lock.ts";
import { findGenerated, type K8sObject, LOCAL_OVERLAY, render, repoRoot, runSeed, scratchRepo } from "./render.ts";

/** Everything these tests create under the system temp directory, removed at the end however they went. */
const created: string[] = [];
const scratch = async () => {
  const root = await scratchRepo();
  created.push(root);
  return root;
};
afterAll(async () => {
  for (const dir of created.splice(0)) {
    // A test may have taken the write bits away (see seedCannotWrite); rm needs them back.
    await execa("chmod", ["-R", "u+rwx", dir], { reject: false });
    await rm(dir, { recursive: true, force: true });
  }
});

const secretsDir = (root: string) => path.join(root, LOCAL_OVERLAY, "secrets");
/** Every credential value any test has seen, to prove none was ever printed. */
const seen = new Set<string>();
const remember = <T extends Record<string, string>>(values: T): T => {
  for (const v of Object.values(values)) if (v.length >= 16 && !v.startsWith("http")) seen.add(v);
  return values;
};
const readEnv = async (root: string) => remember(parseEnv(await readFile(path.join(root, ".env"))));
const readSecrets = async (root: string) =>
  remember(
    Object.fromEntries(
      await Promise.all(
        Object.keys(SECRET_FILES).map(
          async (f) => [f, await readFile(path.join(secretsDir(root), f), "utf8")] as const,
        ),
      ),
    ),
  );
const mode = async (file: string) => (await stat(file)).mode & 0o777;
const decoded = (secret: K8sObject, key: string) => Buffer.from(secret.data[key], "base64").toString("utf8");

describe("credentials (pure logic)", () => {
  it("generates 256-bit URL-safe secrets, different every time", () => {
    const a = generateSecret();
    expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(generateSecret()).not.toBe(a);
    expect(isUsable(a)).toBe(true);
    expect(isUsable("short")).toBe(false);
    expect(isUsable("has space in it, quite long")).toBe(false);
  });

  it("keeps usable credentials, replaces unusable ones, regenerates all on rotate", () => {
    let n = 0;
    const gen = () => `generated-secret-value-${++n}`;
    const existing = { KUMO_HTTP_USER: "alice", KUMO_HTTP_PASSWORD: "kept-password-1234567" };
    const kept = planCredentials(existing, { "dragonfly-password": "bad" }, false, gen);
    expect(kept.credentials).toEqual({
      KUMO_HTTP_USER: "alice",
      KUMO_HTTP_PASSWORD: "kept-password-1234567",
      DRAGONFLY_PASSWORD: "generated-secret-value-1",
    });
    expect(kept.generated).toEqual(["DRAGONFLY_PASSWORD"]);
    const rotated = planCredentials(existing, {}, true, gen);
    expect(rotated.credentials.KUMO_HTTP_PASSWORD).toBe("generated-secret-value-2");
    expect(rotated.credentials.KUMO_HTTP_USER).toBe("alice");
    // The file the cluster Secret was built from wins over a hand-edited .env.
    const fromFile = planCredentials(existing, { "kumo-http-password": "from-the-secret-file-123" }, false, gen);
    expect(fromFile.credentials.KUMO_HTTP_PASSWORD).toBe("from-the-secret-file-123");
  });

  it("merges into .env without losing the user's own lines", () => {
    const before =
      "# mine\nKUMO_HTTP_URL=http://localhost:18000\nKUMO_HTTP_PASSWORD=old\nMY_SETTING=1\nKUMO_HTTP_PASSWORD=older\n";
    const after = mergeEnv(before, {
      KUMO_HTTP_USER: "u",
      KUMO_HTTP_PASSWORD: "new-password-123456",
      DRAGONFLY_PASSWORD: "dragonfly-only-in-secrets",
    });
    const parsed = parseEnv(after);
    expect(parsed).toEqual({
      KUMO_HTTP_URL: "http://localhost:18000",
      KUMO_HTTP_PASSWORD: "new-password-123456",
      KUMO_HTTP_USER: "u",
      MY_SETTING: "1",
      SINK_HTTP_URL: ENV_DEFAULTS.SINK_HTTP_URL,
      TSA_HTTP_URL: ENV_DEFAULTS.TSA_HTTP_URL,
    });
    expect(after.startsWith("# mine\n")).toBe(true);
    expect(after).not.toContain("dragonfly-only-in-secrets");
  });
});

describe("the seed lock (concurrent runs on one clone)", () => {
  const lockIn = async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "seed-lock-"));
    created.push(dir);
    return path.join(dir, "secrets", ".seed.lock");
  };
  const options = { staleMs: 30_000, waitMs: 5_000, pollMs: 10 };

  it("lets one holder work at a time and releases the lock however the work ends", async () => {
    const lock = await lockIn();
    const spans: [number, number][] = [];
    const work = (fail: boolean) => async () => {
      const start = performance.now();
      await sleep(60);
      spans.push([start, performance.now()]);
      if (fail) throw new Error("work failed");
      return "done";
    };
    const results = await Promise.allSettled([1, 2, 3].map((i) => withDirLock(lock, options, work(i === 2))));
    expect(results.map((r) => r.status).sort()).toEqual(["fulfilled", "fulfilled", "rejected"]);
    spans.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < spans.length; i++) expect(spans[i]?.[0]).toBeGreaterThanOrEqual(spans[i - 1]?.[1] as number);
    await expect(stat(lock)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("takes over a lock left by a killed run, and gives up on a live one after the wait", async () => {
    const lock = await lockIn();
    await mkdir(lock, { recursive: true });
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    expect(await withDirLock(lock, options, async () => "ran")).toBe("ran");

    await mkdir(lock);
    const started = Date.now();
    await expect(withDirLock(lock, { ...options, waitMs: 200 }, async () => "ran")).rejects.toBeInstanceOf(
      LockBusyError,
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(200);
    expect((await stat(lock)).isDirectory()).toBe(true);
  });
});

describe("npm run seed (the real script, in a scratch copy of the repository)", () => {
  let root: string;
  const outputs: string[] = [];
  const seed = async (...args: string[]) => {
    const run = await runSeed(root, args);
    outputs.push(run.stdout, run.stderr);
    return run;
  };

  beforeAll(async () => {
    root = await scratch();
  });

  it("creates .env and the secrets files with mode 0600, consistent with each other", async () => {
    const run = await seed();
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain("generated KUMO_HTTP_PASSWORD, DRAGONFLY_PASSWORD");
    expect(run.stdout).toContain("created");
    expect(await mode(path.join(root, ".env"))).toBe(0o600);
    for (const f of Object.keys(SECRET_FILES)) expect(await mode(path.join(secretsDir(root), f)), f).toBe(0o600);
    expect(await mode(secretsDir(root))).toBe(0o700);
    const env = await readEnv(root);
    const secrets = await readSecrets(root);
    expect(env).toMatchObject({ ...ENV_DEFAULTS, KUMO_HTTP_USER: secrets["kumo-http-username"] });
    expect(env.KUMO_HTTP_PASSWORD).toBe(secrets["kumo-http-password"]);
    expect(env.KUMO_HTTP_PASSWORD).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secrets["dragonfly-password"]).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(secrets["dragonfly-password"]).not.toBe(env.KUMO_HTTP_PASSWORD);
  });

  it("renders Secrets that hold exactly the credentials in .env", async () => {
    const env = await readEnv(root);
    const secrets = await readSecrets(root);
    const objects = await render(root);
    const http = findGenerated(objects, "Secret", "kumo-http-auth");
    expect(decoded(http, "username")).toBe(env.KUMO_HTTP_USER);
    expect(decoded(http, "password")).toBe(env.KUMO_HTTP_PASSWORD);
    expect(decoded(findGenerated(objects, "Secret", "dragonfly-auth"), "password")).toBe(secrets["dragonfly-password"]);
  });

  it("keeps existing credentials and the user's .env lines when run again", async () => {
    const envFile = path.join(root, ".env");
    await writeFile(envFile, `${await readFile(envFile, "utf8")}MY_SETTING=keep-me\n`);
    const before = { env: await readEnv(root), secrets: await readSecrets(root) };
    const run = await seed("--json");
    expect(run.exitCode, run.stderr).toBe(0);
    const summary = JSON.parse(run.stdout);
    expect(summary.generated).toEqual([]);
    expect(summary.kept).toEqual(["KUMO_HTTP_PASSWORD", "DRAGONFLY_PASSWORD"]);
    expect(Object.values(summary.files)).toEqual(["unchanged", "unchanged", "unchanged", "unchanged"]);
    expect(await readEnv(root)).toEqual(before.env);
    expect(await readSecrets(root)).toEqual(before.secrets);
  });

  it("--rotate replaces every password and keeps the files consistent", async () => {
    const before = { env: await readEnv(root), secrets: await readSecrets(root) };
    const run = await seed("--rotate");
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain("(rotated)");
    const env = await readEnv(root);
    const secrets = await readSecrets(root);
    expect(env.KUMO_HTTP_PASSWORD).not.toBe(before.env.KUMO_HTTP_PASSWORD);
    expect(secrets["dragonfly-password"]).not.toBe(before.secrets["dragonfly-password"]);
    expect(secrets["kumo-http-password"]).toBe(env.KUMO_HTTP_PASSWORD);
    expect(env.MY_SETTING).toBe("keep-me");
    expect(await mode(path.join(root, ".env"))).toBe(0o600);
  });

  it("answers --help and rejects unknown options with exit code 2", async () => {
    const help = await seed("--help");
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toContain("--rotate");
    const bad = await seed("--rotat");
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain("npm run seed -- --help");
  });

  it("gives concurrent first runs (Tilt and a test run on a fresh clone) one consistent set of credentials", async () => {
    const fresh = await scratch();
    const runs = await Promise.all([1, 2, 3, 4].map(() => runSeed(fresh, ["--json"])));
    for (const r of runs) expect(r.exitCode, r.stderr).toBe(0);
    const generated = runs.map((r) => JSON.parse(r.stdout).generated.length);
    expect(generated.sort()).toEqual([0, 0, 0, 2]);
    expect((await readEnv(fresh)).KUMO_HTTP_PASSWORD).toBe((await readSecrets(fresh))["kumo-http-password"]);
  });

  it("says another seed run holds the lock (exit 21), waits for it, and changes nothing", async () => {
    const fresh = await scratch();
    await mkdir(path.join(secretsDir(fresh), ".seed.lock"), { recursive: true });
    const run = await runSeed(fresh, ["--json"]);
    expect(run.exitCode).toBe(21);
    expect(run.stderr).toMatch(/^error: another seed run has held k8s\/overlays\/local\/secrets\/\.seed\.lock/m);
    expect(run.stderr).toMatch(/^hint: Another `npm run seed` is still running/m);
    expect(run.stderr).not.toContain("chown");
    expect(JSON.parse(run.stdout)).toMatchObject({
      exit_code: 21,
      error: { message: expect.stringContaining("lock") },
    });
    expect(await readdir(secretsDir(fresh))).toEqual([".seed.lock"]);
    await expect(stat(path.join(fresh, ".env"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it.each([
    ["the secrets directory", `${LOCAL_OVERLAY}/secrets`, "cannot write in k8s/overlays/local/secrets/"],
    ["the repository root (.env)", ".", "cannot write .env"],
  ])("says why it cannot write %s (exit 20), with the ownership fix, and changes nothing", async (_, locked, text) => {
    const fresh = await scratch();
    await mkdir(secretsDir(fresh), { recursive: true });
    const run = await seedCannotWrite(fresh, path.join(fresh, locked), ["--json"]);
    expect(run.exitCode, run.stderr).toBe(20);
    expect(run.stderr).toContain(`error: ${text}: permission denied (EACCES); no credential was changed`);
    expect(run.stderr).toMatch(/^hint: Check that you own \.env and k8s\/overlays\/local\/secrets\/.*chown/m);
    expect(run.stderr).not.toMatch(/internal error|\n\s+at /);
    expect(JSON.parse(run.stdout)).toMatchObject({ exit_code: 20, error: { message: expect.stringContaining(text) } });
    // No credential file, temporary file or lock left: a later run starts clean.
    expect(await readdir(secretsDir(fresh))).toEqual([]);
    await expect(stat(path.join(fresh, ".env"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("never printed a credential, old or new", () => {
    const all = outputs.join("\n");
    expect(all.length).toBeGreaterThan(0);
    expect(seen.size).toBeGreaterThanOrEqual(4);
    for (const value of seen) expect(all).not.toContain(value);
  });
});

/** Runs seed in `root` with `locked` not writable for it: `locked` loses its write bits. */
async function seedCannotWrite(root: string, locked: string, args: string[]) {
  await chmod(locked, 0o555);
  const seed = [path.join(repoRoot, "node_modules/.bin/tsx"), path.join(root, "scripts/seed.ts"), ...args];
  // Root passes permission bits through CAP_DAC_OVERRIDE (and DAC_READ_SEARCH, FOWNER). Without them in its bounding
  // set it meets the missing write bit like any user, while still reaching a repository in a private directory.
  const [command, ...argv] =
    process.getuid?.() === 0 ? ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", ...seed] : seed;
  return execa(command as string, argv, { cwd: root, reject: false });
}
