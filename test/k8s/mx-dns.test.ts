/**
 * mx-dns's Corefile, as rendered, answered by the real CoreDNS (the build of the image's tag, .ci/install-tools.sh):
 * the lookups kumod and tsa-daemon make for mail routing, and the ones that must find nothing.
 */

import { Resolver } from "node:dns/promises";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa, type ResultPromise } from "execa";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { container, envValue, find, findGenerated, render, repoRoot, runSeed, scratchRepo } from "./render.ts";

const COREDNS = path.join(repoRoot, ".tools/bin/coredns");
const SINK_IP = "10.96.0.25";

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

let dir: string;
let namespace: string;
const servers: ResultPromise[] = [];
const resolver = new Resolver({ timeout: 2000, tries: 1 });

async function waitForDns(port: number) {
  const probe = new Resolver({ timeout: 300, tries: 1 });
  probe.setServers([`127.0.0.1:${port}`]);
  for (let i = 0; i < 100; i++) {
    try {
      await probe.resolveMx("example.com");
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ECONNREFUSED" && (err as NodeJS.ErrnoException).code !== "ETIMEOUT")
        return;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  if (!existsSync(COREDNS)) throw new Error(`${COREDNS} is missing: run .ci/install-tools.sh (it builds CoreDNS)`);
  const scratch = await scratchRepo();
  try {
    if ((await runSeed(scratch)).exitCode !== 0) throw new Error("seed failed in a scratch copy");
    const objects = await render(scratch);
    namespace = find(objects, "Namespace", "kumomta").metadata.name;
    const deployment = find(objects, "Deployment", "mx-dns");
    const corefile: string = findGenerated(objects, "ConfigMap", "mx-dns").data.Corefile;
    const clusterDomain = envValue(container(deployment, "coredns"), "CLUSTER_DOMAIN") as string;
    dir = await mkdtemp(path.join(tmpdir(), "kumomta-tilt-mx-dns-"));
    // The cluster's own DNS, as mx-dns finds it through /etc/resolv.conf: it knows the sink Service.
    const clusterPort = await freePort();
    await writeFile(path.join(dir, "hosts"), `${SINK_IP} sink.${namespace}.svc.${clusterDomain}\n`);
    await writeFile(
      path.join(dir, "Corefile.cluster"),
      `.:${clusterPort} {\n    bind 127.0.0.1\n    hosts ${path.join(dir, "hosts")}\n}\n`,
    );
    // mx-dns as rendered, moved to loopback ports: the only edits are where it listens and where the pod's
    // resolv.conf would send it.
    const port = await freePort();
    const local = corefile
      .replace(/^\.:53 \{$/m, `.:${port} {\n    bind 127.0.0.1`)
      .replace(/health :8080/, `health 127.0.0.1:${await freePort()}`)
      .replace(/ready :8181/, `ready 127.0.0.1:${await freePort()}`)
      .replace(/\/etc\/resolv\.conf/, `127.0.0.1:${clusterPort}`);
    await writeFile(path.join(dir, "Corefile"), local);
    servers.push(execa(COREDNS, ["-conf", path.join(dir, "Corefile.cluster")], { reject: false }));
    servers.push(
      execa(COREDNS, ["-conf", path.join(dir, "Corefile")], {
        reject: false,
        env: { POD_NAMESPACE: namespace, CLUSTER_DOMAIN: clusterDomain },
      }),
    );
    await waitForDns(port);
    resolver.setServers([`127.0.0.1:${port}`]);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
});

afterAll(async () => {
  for (const s of servers) s.kill("SIGTERM");
  await Promise.all(servers);
  if (dir) await rm(dir, { recursive: true, force: true });
});

const mxHosts = async (domain: string) =>
  (await resolver.resolveMx(domain)).sort((a, b) => a.priority - b.priority).map((m) => m.exchange);

describe("mx-dns answers every domain's MX like its provider's, and every such host is the sink", () => {
  it("gives Google's domains Google's five hosts (KumoMTA's provider google: MX suffix .google.com)", async () => {
    for (const domain of ["gmail.com", "googlemail.com"]) {
      expect(await mxHosts(domain)).toEqual([
        "gmail-smtp-in.l.google.com",
        "alt1.gmail-smtp-in.l.google.com",
        "alt2.gmail-smtp-in.l.google.com",
        "alt3.gmail-smtp-in.l.google.com",
        "alt4.gmail-smtp-in.l.google.com",
      ]);
    }
  });

  it("gives Yahoo's domains Yahoo's hosts (provider yahoo: .yahoodns.net)", async () => {
    for (const domain of ["yahoo.com", "aol.com", "ymail.com"]) {
      expect((await mxHosts(domain)).sort()).toEqual([
        "mta5.am0.yahoodns.net",
        "mta6.am0.yahoodns.net",
        "mta7.am0.yahoodns.net",
      ]);
    }
  });

  it("gives Microsoft's consumer domains a host each (provider outlook: .olc.protection.outlook.com)", async () => {
    expect(await mxHosts("outlook.com")).toEqual(["outlook-com.olc.protection.outlook.com"]);
    expect(await mxHosts("hotmail.com")).toEqual(["hotmail-com.olc.protection.outlook.com"]);
    expect(await mxHosts("live.com")).toEqual(["live-com.olc.protection.outlook.com"]);
  });

  it("gives any other domain, known or made up, a host of its own", async () => {
    expect(await mxHosts("example.com")).toEqual(["mx1.example.com"]);
    expect(await mxHosts("no-such-domain-kumomta-tilt.test")).toEqual(["mx1.no-such-domain-kumomta-tilt.test"]);
    expect(await mxHosts("mail.sub.example.net")).toEqual(["mx1.mail.sub.example.net"]);
  });

  it("resolves every MX host it hands out to the sink Service", async () => {
    for (const domain of ["gmail.com", "yahoo.com", "hotmail.com", "example.com"]) {
      for (const host of await mxHosts(domain)) expect(await resolver.resolve4(host), host).toEqual([SINK_IP]);
    }
  });

  it("answers the cluster's own names through the cluster DNS", async () => {
    expect(await resolver.resolve4(`sink.${namespace}.svc.cluster.local`)).toEqual([SINK_IP]);
  });

  it("resolves nothing else, so no lookup leads to the internet (MTA-STS included)", async () => {
    for (const [name, query] of [
      ["www.example.org", () => resolver.resolve4("www.example.org")],
      ["_mta-sts.gmail.com", () => resolver.resolveTxt("_mta-sts.gmail.com")],
      ["mta-sts.gmail.com", () => resolver.resolve4("mta-sts.gmail.com")],
    ] as const) {
      await expect(query(), name).rejects.toMatchObject({
        code: expect.stringMatching(/ESERVFAIL|ENOTFOUND|EREFUSED/),
      });
    }
  });
});
