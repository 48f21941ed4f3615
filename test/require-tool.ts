import { accessSync, constants, statSync } from "node:fs";
import path from "node:path";

function isExecutableFile(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Fails with one line naming a missing external tool and how to get it, instead of a spawn ENOENT deep in a test.
 * `name` is an absolute path (checked as is) or a bare command (looked up on PATH).
 */
export function requireTool(name: string, how: string): void {
  const found = path.isAbsolute(name)
    ? isExecutableFile(name)
    : (process.env.PATH ?? "")
        .split(path.delimiter)
        .some((dir) => dir !== "" && isExecutableFile(path.join(dir, name)));
  if (!found) throw new Error(`${name} is missing: ${how}`);
}

const debian = (pkg: string) => `install Debian's ${pkg} package (run .ci/install-system.sh)`;

/** How to get each tool the tests drive; the Debian package names are those .ci/install-system.sh installs. */
export const HOW_TO_GET = {
  postfix: debian("postfix"),
  swaks: debian("swaks"),
  openssl: debian("openssl"),
  kubectl: "https://kubernetes.io/docs/tasks/tools/",
} as const;
