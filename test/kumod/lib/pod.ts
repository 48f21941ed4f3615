/**
 * Runs one container of a rendered pod as a process: in the pod's network namespace, in a private mount namespace
 * whose root is a read-only assembly of this machine's /usr and /etc (the "image" libraries), KumoMTA's bundle at
 * /opt/kumomta/{sbin,share} (the image's own files), and the pod's volumes mounted where the manifest mounts them,
 * read-only where it says so. The process runs as the pod's runAsUser/runAsGroup with fsGroup as a supplementary
 * group, so a write the pod could not make fails here too. The mounts exist only in that namespace and vanish with
 * the process; on disk only the pod's temp directory is touched.
 */
import { createWriteStream } from "node:fs";
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import type { PodHost } from "./network.ts";

export interface Mount {
  /** Path inside the pod. */
  target: string;
  /** A directory or file on this machine. */
  source: string;
  readOnly: boolean;
}

export interface ContainerSpec {
  name: string;
  host: PodHost;
  command: string[];
  env: Record<string, string>;
  mounts: Mount[];
  /** Read-only directories of the image (e.g. /opt/kumomta/sbin), bound from this machine. */
  image: Mount[];
  /** Directories the image has (created in the read-only root, e.g. /opt/kumomta/etc). */
  imageDirs: string[];
  user: number;
  group: number;
  /** The pod's fsGroup, a supplementary group of the process when set. */
  fsGroup?: number;
  /** Scratch directory of this container: its root assembly and log live here. */
  dir: string;
}

export interface RunningContainer {
  spec: ContainerSpec;
  process: ResultPromise;
  /** Everything the process printed so far (stdout and stderr, in order). */
  output(): string;
  logFile: string;
  /** Resolves with the exit code (or null after a signal) once the process has exited. */
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

const q = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;
const SYSTEM_DIRS = ["usr"];
const MERGED_LINKS = ["bin", "sbin", "lib", "lib64"];

function rootScript(spec: ContainerSpec, root: string): string {
  const lines = ["set -eu", `R=${q(root)}`, `hostname ${q(spec.name)}`, 'mount --bind "$R" "$R"'];
  for (const d of SYSTEM_DIRS) {
    lines.push(`mkdir -p "$R/${d}"`, `mount --rbind /${d} "$R/${d}"`, `mount -o remount,bind,ro "$R/${d}"`);
  }
  // /etc as an overlay of this machine's, so that volumes can be mounted inside it (/etc/coredns, /etc/sink).
  lines.push(
    'mkdir -p "$R/etc" "$R/.etc-upper" "$R/.etc-work"',
    'mount -t overlay overlay -o lowerdir=/etc,upperdir="$R/.etc-upper",workdir="$R/.etc-work" "$R/etc"',
  );
  for (const l of MERGED_LINKS) {
    lines.push(`if [ -L /${l} ]; then ln -s "$(readlink /${l})" "$R/${l}"; fi`);
  }
  lines.push('mkdir -p "$R/dev" "$R/proc"', 'mount --rbind /dev "$R/dev"', 'mount -t proc proc "$R/proc"');
  for (const d of spec.imageDirs) lines.push(`mkdir -p "$R"${q(d)}`);
  for (const m of [...spec.image, ...spec.mounts]) {
    const target = `"$R"${q(m.target)}`;
    // A file mount needs an existing file to cover; /etc/* files already exist through the /etc bind.
    lines.push(
      `if [ -d ${q(m.source)} ]; then mkdir -p ${target}; elif [ ! -e ${target} ]; then mkdir -p "$(dirname ${target})"; : > ${target}; fi`,
    );
    lines.push(`mount --bind ${q(m.source)} ${target}`);
    if (m.readOnly) lines.push(`mount -o remount,bind,ro ${target}`);
  }
  lines.push('mount -o remount,ro "$R/etc"', 'mount -o remount,bind,ro "$R"');
  const env = Object.entries(spec.env).map(([k, v]) => q(`${k}=${v}`));
  lines.push(
    `exec chroot --userspec=${spec.user}:${spec.group}${spec.fsGroup === undefined ? "" : ` --groups=${spec.fsGroup}`} "$R" /usr/bin/env -i ${env.join(" ")} ${spec.command.map(q).join(" ")}`,
  );
  return `${lines.join("\n")}\n`;
}

export async function startContainer(spec: ContainerSpec): Promise<RunningContainer> {
  const root = path.join(spec.dir, "root");
  await mkdir(root, { recursive: true });
  const script = path.join(spec.dir, "start.sh");
  await writeFile(script, rootScript(spec, root));
  const logFile = path.join(spec.dir, "output.log");
  const log = createWriteStream(logFile);
  const child = execa(
    "nsenter",
    [...spec.host.nsenter, "unshare", "--mount", "--uts", "--propagation", "private", "--", "sh", script],
    { reject: false, all: true, buffer: false, stdin: "ignore" },
  );
  let text = "";
  child.all?.on("data", (chunk: Buffer) => {
    text += chunk.toString();
    log.write(chunk);
  });
  const exited = child.then((r) => (r.signal ? null : (r.exitCode ?? null)));
  return {
    spec,
    process: child,
    output: () => text,
    logFile,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 30_000) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      log.end();
      return code;
    },
  };
}

/** A volume directory as the kubelet prepares it: group fsGroup and setgid, or open to all without an fsGroup. */
export async function volumeDir(dir: string, fsGroup: number | undefined): Promise<string> {
  await mkdir(dir, { recursive: true });
  if (fsGroup === undefined) {
    await chmod(dir, 0o777);
  } else {
    await chown(dir, 0, fsGroup);
    await chmod(dir, 0o2775);
  }
  return dir;
}

/** Files of a ConfigMap or Secret volume: root-owned, group fsGroup for Secrets, with the volume's mode. */
export async function fileVolume(
  dir: string,
  files: Record<string, string | Buffer>,
  mode: number,
  group = 0,
): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name);
    await writeFile(file, content);
    await chown(file, 0, group);
    await chmod(file, mode);
  }
  await chmod(dir, 0o755);
  return dir;
}
