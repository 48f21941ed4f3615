/**
 * A lock between processes on one machine: creating a directory is atomic, so whoever creates it holds the lock.
 * A lock older than any real holder can be was left by a killed process and is taken over.
 */
import { mkdir, rmdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

export class LockBusyError extends Error {}

export interface DirLockOptions {
  /** A lock directory older than this is stale. */
  staleMs: number;
  /** How long to wait for a live holder before giving up with LockBusyError. */
  waitMs: number;
  pollMs?: number;
}

/** Runs `work` while holding `lockDir`; the lock is released however `work` ends. */
export async function withDirLock<T>(lockDir: string, options: DirLockOptions, work: () => Promise<T>): Promise<T> {
  const poll = options.pollMs ?? 50;
  const deadline = Date.now() + options.waitMs;
  await mkdir(dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      await mkdir(lockDir);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const created = await stat(lockDir).then(
      (s) => s.mtimeMs,
      () => Date.now(),
    );
    if (Date.now() - created > options.staleMs) await rmdir(lockDir).catch(() => undefined);
    else if (Date.now() >= deadline) throw new LockBusyError(`${lockDir} is held by another run`);
    else await sleep(poll);
  }
  try {
    return await work();
  } finally {
    await rmdir(lockDir).catch(() => undefined);
  }
}
