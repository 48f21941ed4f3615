/**
 * A ClusterIP for the real-binary tier, in the way kube-proxy's userspace mode provided one: a virtual address on the
 * node that accepts TCP connections and forwards each to the Service's current endpoint. The address stays while
 * the pod behind it is replaced and comes back with a new IP; without an endpoint the port is closed, so a client
 * gets "connection refused", as from kube-proxy's REJECT rule for a Service with no ready pod. Its established
 * connections end with it, as they do when the pod stops.
 */
import net from "node:net";
import { execa } from "execa";

export class ServiceProxy {
  private server?: net.Server;
  private endpoint?: string;
  private readonly sockets = new Set<net.Socket>();

  private constructor(
    readonly vip: string,
    readonly port: number,
    readonly targetPort: number,
  ) {}

  /** Adds `vip` to the node's loopback device; pods reach it through their route to the Service range. */
  static async create(vip: string, port: number, targetPort: number): Promise<ServiceProxy> {
    await execa("ip", ["addr", "add", `${vip}/32`, "dev", "lo"]);
    return new ServiceProxy(vip, port, targetPort);
  }

  /** Points the Service at a pod's IP (it became Ready), or at nothing (it went away). */
  async setEndpoint(ip: string | undefined): Promise<void> {
    this.endpoint = ip;
    if (ip !== undefined && this.server === undefined) {
      const server = net.createServer((client) => this.forward(client));
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(this.port, this.vip, () => resolve());
      });
      this.server = server;
    } else if (ip === undefined && this.server !== undefined) {
      const server = this.server;
      this.server = undefined;
      for (const s of this.sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  }

  private forward(client: net.Socket) {
    const endpoint = this.endpoint;
    if (endpoint === undefined) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: endpoint, port: this.targetPort });
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.on("close", () => this.sockets.delete(s));
      s.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }

  async close(): Promise<void> {
    await this.setEndpoint(undefined);
  }
}
