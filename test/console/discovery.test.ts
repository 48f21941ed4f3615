import { describe, expect, it } from "vitest";
import { DnsDiscovery, type Resolver } from "../../scripts/console/collect.ts";

/** The records a headless Service would give: the ready pods' addresses, each with its pod's PTR name. */
function service(pods: Record<string, string>): Resolver & { pods: Record<string, string> } {
  const r = {
    pods,
    addresses: async () => Object.values(r.pods),
    names: async (ip: string) => {
      const name = Object.entries(r.pods).find(([, a]) => a === ip)?.[0];
      if (!name) throw new Error("ENOTFOUND");
      return [`${name}.kumod-headless.kumomta.svc.cluster.local`];
    },
  };
  return r;
}

describe("DnsDiscovery (kumod pods from the headless Service)", () => {
  it("names pods by their PTR record and keeps a pod that left DNS listed, until it is forgotten", async () => {
    const dns = service({ "kumod-0": "10.244.0.5", "kumod-1": "10.244.0.6" });
    const d = new DnsDiscovery("kumod-headless", 8000, 60_000, dns);
    expect(await d.targets(0)).toEqual({
      live: [
        { id: "kumod-0", url: "http://10.244.0.5:8000/" },
        { id: "kumod-1", url: "http://10.244.0.6:8000/" },
      ],
      gone: [],
    });
    dns.pods = { "kumod-0": "10.244.0.5" };
    expect((await d.targets(1000)).gone).toEqual([{ id: "kumod-1", url: "http://10.244.0.6:8000/" }]);
    // Restarted with a new address: the same pod, no longer gone.
    dns.pods = { "kumod-0": "10.244.0.5", "kumod-1": "10.244.0.9" };
    expect(await d.targets(2000)).toMatchObject({ live: [{ id: "kumod-0" }, { id: "kumod-1" }], gone: [] });
    dns.pods = { "kumod-0": "10.244.0.5" };
    expect((await d.targets(3000)).gone).toHaveLength(1);
    expect((await d.targets(3000 + 60_001)).gone).toEqual([]);
  });

  it("reports a name that does not resolve, and pods without a PTR record by address", async () => {
    const failing: Resolver = {
      addresses: async () => {
        throw Object.assign(new Error("getaddrinfo ENOTFOUND kumod-headless"), { code: "ENOTFOUND" });
      },
      names: async () => [],
    };
    const d = new DnsDiscovery("kumod-headless", 8000, 60_000, failing);
    expect((await d.targets(0)).error).toBe("cannot resolve kumod-headless: getaddrinfo ENOTFOUND kumod-headless");
    const bare: Resolver = { addresses: async () => ["10.0.0.7"], names: async () => Promise.reject(new Error("x")) };
    expect((await new DnsDiscovery("k", 8000, 1, bare).targets(0)).live).toEqual([
      { id: "10.0.0.7", url: "http://10.0.0.7:8000/" },
    ]);
  });
});
