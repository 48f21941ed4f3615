/**
 * Pod networking for the real-binary tier: a bridge in the test's own network namespace (the "node", which
 * `test/kumod/run.ts` creates with no route anywhere) and one network namespace per pod, joined to the bridge by a
 * veth pair, as a CNI plugin would. Nothing is created in the machine's own namespace, nothing is written under
 * /run/netns: each pod namespace is held by a process that exits when our stdin pipe closes, so a crashed test run
 * leaves nothing behind.
 */
import { execa, type ResultPromise } from "execa";

export const NODE_IP_SUFFIX = 1;
/** Where Service addresses come from (ServiceProxy), routed by every pod through the node as in a cluster. */
export const SERVICE_CIDR = "10.96.0.0/16";

export interface PodHost {
  name: string;
  ip: string;
  /** PID whose /proc/PID/ns/net is the pod's network namespace. */
  holderPid: number;
  /** nsenter arguments that run a command inside the pod's network namespace. */
  nsenter: string[];
}

export class PodNetwork {
  private readonly holders: ResultPromise[] = [];
  private next = 10;

  /**
   * A second address of the node, outside every range in KUMO_TRUSTED_HOSTS: requests from it are what a peer the
   * pods do not trust sees.
   */
  readonly untrustedIp = "100.64.0.1";

  private constructor(
    readonly prefix: string,
    readonly nodeIp: string,
  ) {}

  /** Sets up bridge `kt0` with `<prefix>.1/24` in the current namespace (the node). */
  static async create(prefix = "10.244.0"): Promise<PodNetwork> {
    const net = new PodNetwork(prefix, `${prefix}.${NODE_IP_SUFFIX}`);
    await execa("ip", ["link", "set", "lo", "up"]);
    await execa("ip", ["link", "add", "kt0", "type", "bridge"]);
    await execa("ip", ["addr", "add", `${net.nodeIp}/24`, "dev", "kt0"]);
    await execa("ip", ["addr", "add", `${net.untrustedIp}/32`, "dev", "kt0"]);
    await execa("ip", ["link", "set", "kt0", "up"]);
    return net;
  }

  /** A new pod network namespace with the next free address on the bridge. */
  async addHost(name: string): Promise<PodHost> {
    const index = this.next++;
    const ip = `${this.prefix}.${index}`;
    const holder = execa("unshare", ["--net", "--", "sh", "-c", "read _"], { stdin: "pipe", reject: false });
    this.holders.push(holder);
    const holderPid = holder.pid;
    if (holderPid === undefined) throw new Error(`could not start the network namespace holder for ${name}`);
    const nsPath = `/proc/${holderPid}/ns/net`;
    // unshare execs sh only after the namespace exists; wait for that before moving an interface into it.
    await waitFor(async () => (await execa("readlink", [nsPath], { reject: false })).stdout !== (await selfNetns()));
    const veth = `kv${index}`;
    await execa("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", String(holderPid)]);
    await execa("ip", ["link", "set", veth, "master", "kt0", "up"]);
    const nsenter = [`--net=${nsPath}`];
    await execa("nsenter", [
      ...nsenter,
      "sh",
      "-c",
      [
        "ip link set lo up",
        `ip addr add ${ip}/24 dev eth0`,
        "ip link set eth0 up",
        `ip route add ${this.untrustedIp}/32 dev eth0`,
        `ip route add ${SERVICE_CIDR} via ${this.nodeIp} dev eth0`,
      ].join(" && "),
    ]);
    return { name, ip, holderPid, nsenter };
  }

  /** Ends every pod namespace (their processes must already be stopped). */
  async close(): Promise<void> {
    for (const holder of this.holders) holder.stdin?.end();
    await Promise.all(this.holders);
  }
}

async function selfNetns(): Promise<string> {
  return (await execa("readlink", ["/proc/self/ns/net"])).stdout;
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs = 5000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
