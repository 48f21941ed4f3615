/**
 * Reloads the rules file when its content changes. Polls instead of fs.watch because kubelet updates a mounted
 * ConfigMap by swapping the `..data` symlink of the directory, which a watch on the file itself does not see.
 */
import { readFile } from "node:fs/promises";
import { log } from "./log.ts";
import { ConfigError, parseConfig, type SinkConfig } from "./rules/config.ts";

export function watchConfig(path: string, initial: string, intervalMs: number, apply: (c: SinkConfig) => void) {
  let last = initial;
  let busy = false;
  let unreadable = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try {
      const text = await readFile(path, "utf8");
      unreadable = false;
      if (text === last) return;
      last = text;
      try {
        apply(parseConfig(text));
        log("info", "config reloaded", { path });
      } catch (err) {
        const details = err instanceof ConfigError ? err.details : [(err as Error).message];
        log("error", "config reload rejected; keeping the previous rules", { path, details });
      }
    } catch (err) {
      if (!unreadable)
        log("warn", "config file unreadable; keeping the previous rules", { path, error: (err as Error).message });
      unreadable = true;
    } finally {
      busy = false;
    }
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
