/**
 * The console as the cluster runs it: the image definition (checked statically: no container engine here), the
 * Deployment's settings against the Services they name, the NetworkPolicies around it, and the image's own start
 * command run here with the Deployment's environment.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { connectionAllowed, type Peer } from "../k8s/network-policy.ts";
import { container, envValue, find, type K8sObject, render, runSeed } from "../k8s/render.ts";
import { CONSOLE_COMMAND, repoRoot, StandInKumod, startConsole } from "./stand-ins.ts";

const dockerfile = readFileSync(path.join(repoRoot, "scripts/console/Dockerfile"), "utf8");
const stages = dockerfile.split(/^(?=FROM\s)/m).filter((s) => s.startsWith("FROM"));
const final = stages[stages.length - 1] ?? "";
const entrypoint = JSON.parse(final.match(/^ENTRYPOINT\s+(\[.*\])\s*$/m)?.[1] ?? "null") as string[] | null;

/** Packages and files imported by the console's modules (or by `entries`) and the modules they import, transitively. */
function imports(entries?: string[]): { packages: Set<string>; files: Set<string> } {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const m of readFileSync(file, "utf8").matchAll(/^(?:import|export)\s[^;]*?from\s+"([^"]+)"/gms)) {
      const spec = m[1] as string;
      if (m[0].startsWith("import type")) continue;
      if (spec.startsWith(".")) visit(path.resolve(path.dirname(file), spec));
      else if (!spec.startsWith("node:"))
        packages.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] as string));
    }
  };
  const dir = path.join(repoRoot, "scripts/console");
  const walk = (d: string): string[] =>
    readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(d, e.name)) : e.name.endsWith(".ts") ? [path.join(d, e.name)] : [],
    );
  for (const f of entries ?? walk(dir)) visit(f);
  return { packages, files: seen };
}

describe("scripts/console/Dockerfile", () => {
  it("uses the pinned Node of .node-version, like the sink, and runs as a numeric non-root user", () => {
    const pinned = readFileSync(path.join(repoRoot, ".node-version"), "utf8").trim();
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) expect(stage.match(/^FROM\s+(\S+)/)?.[1]).toMatch(new RegExp(`^node:${pinned}-`));
    const user = final.match(/^USER\s+(\S+)\s*$/m)?.[1];
    expect(Number(user)).toBeGreaterThan(0);
  });

  it("holds every file and package the console loads: scripts/console, scripts/lib, the root's production dependencies", () => {
    expect(dockerfile).toMatch(/^COPY package\.json package-lock\.json \.\/$/m);
    expect(dockerfile).toMatch(/^RUN npm ci --omit=dev --ignore-scripts\b/m);
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const { packages, files } = imports();
    // The image holds scripts/console and scripts/lib only.
    for (const f of files) expect(path.relative(repoRoot, f)).toMatch(/^scripts\/(console|lib)\//);
    expect(final).toMatch(/^COPY scripts\/lib \.\/scripts\/lib$/m);
    expect(final).toMatch(/^COPY scripts\/console \.\/scripts\/console$/m);
    expect([...packages]).toEqual(expect.arrayContaining(["esbuild", "smol-toml"]));
    for (const p of packages) expect(Object.keys(pkg.dependencies), p).toContain(p);
    // uPlot is bundled into the page at start; tsx runs the TypeScript.
    expect(Object.keys(pkg.dependencies)).toEqual(expect.arrayContaining(["uplot", "tsx"]));
  });

  it("holds the injector the in-cluster Job runs: scripts/inject.ts, what it imports and reads, its packages", () => {
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
      dependencies: Record<string, string>;
    };
    const { packages, files } = imports([path.join(repoRoot, "scripts/inject.ts")]);
    for (const f of files) expect(path.relative(repoRoot, f)).toMatch(/^scripts\/(inject\.ts$|lib\/)/);
    expect(final).toMatch(/^COPY scripts\/inject\.ts \.\/scripts\/inject\.ts$/m);
    // The default payload, and the overlay the tools read their namespace from (scripts/lib/env.ts).
    expect(final).toMatch(/^COPY sample_http_inject_payload\.json \.\/$/m);
    expect(final).toMatch(
      /^COPY k8s\/overlays\/local\/kustomization\.yaml \.\/k8s\/overlays\/local\/kustomization\.yaml$/m,
    );
    expect([...packages]).toEqual(expect.arrayContaining(["cli-progress"]));
    for (const p of packages) expect(Object.keys(pkg.dependencies), p).toContain(p);
  });

  it("builds from the same context with docker build as with Tilt: the .dockerignore lets in what the Dockerfile copies", () => {
    const ignore = readFileSync(path.join(repoRoot, "scripts/console/Dockerfile.dockerignore"), "utf8");
    const allowed = ignore
      .split("\n")
      .filter((l) => l.startsWith("!"))
      .map((l) => l.slice(1));
    const copied = [...final.matchAll(/^COPY (?!--)(.+) \S+$/gm)].flatMap((m) => (m[1] as string).split(" "));
    expect(copied.length).toBeGreaterThan(0);
    for (const src of copied) expect(allowed, src).toContain(src);
  });

  it("starts the program the tests and `npm run console` start", () => {
    expect(entrypoint).toEqual(CONSOLE_COMMAND);
    const pkg = JSON.parse(readFileSync(path.join(repoRoot, "package.json"), "utf8")) as {
      scripts: Record<string, string>;
    };
    expect(pkg.scripts.console).toBe("tsx scripts/console/main.ts");
  });
});

describe("the console in the rendered local overlay", () => {
  let objects: K8sObject[];
  let deployment: K8sObject;
  const policies = () => objects.filter((o) => o.kind === "NetworkPolicy");

  beforeAll(async () => {
    const seeded = await runSeed(repoRoot, ["--quiet"]);
    expect(seeded.exitCode, seeded.stderr).toBe(0);
    objects = await render(repoRoot);
    deployment = find(objects, "Deployment", "console");
  });

  it("names Services that exist, on the ports they serve, and listens where its probes and Tilt look", () => {
    const c = container(deployment, "console");
    expect(c.image).toBe("kumomta-tilt-console");
    const [dnsHost, dnsPort] = (envValue(c, "CONSOLE_KUMOD_DNS") ?? "").split(":");
    const headless = find(objects, "Service", dnsHost as string);
    expect(headless.spec.clusterIP).toBe("None");
    expect(headless.spec.selector).toEqual({ "app.kubernetes.io/name": "kumod" });
    expect(headless.spec.ports.map((p: K8sObject) => p.port)).toContain(Number(dnsPort));
    for (const [name, workload] of [
      ["CONSOLE_TSA", "tsa-daemon"],
      ["CONSOLE_SINK", "sink"],
    ] as const) {
      const url = new URL(envValue(c, name) as string);
      const svc = find(objects, "Service", url.hostname);
      expect(svc.spec.selector["app.kubernetes.io/name"], name).toBe(workload);
      expect(
        svc.spec.ports.map((p: K8sObject) => p.port),
        name,
      ).toContain(Number(url.port));
    }
    expect(envValue(c, "CONSOLE_HOST")).toBe("0.0.0.0");
    expect(c.ports).toEqual([{ name: "http", containerPort: Number(envValue(c, "CONSOLE_PORT")) }]);
    expect(c.readinessProbe.httpGet.path).toBe("/readyz");
    expect(c.livenessProbe.httpGet.path).toBe("/livez");
  });

  it("may reach kumod's, tsa-daemon's and the sink's HTTP ports and nothing else; nothing in the cluster reaches it", () => {
    const labels = (kind: string, name: string): Peer => ({
      labels: find(objects, kind, name).spec.template.metadata.labels,
    });
    const me = labels("Deployment", "console");
    const others: Record<string, [Peer, number[]]> = {
      kumod: [labels("StatefulSet", "kumod"), [8000]],
      tsa: [labels("StatefulSet", "tsa"), [8008]],
      sink: [labels("Deployment", "sink"), [2525, 8025]],
      dragonfly: [labels("Deployment", "dragonfly"), [6379]],
    };
    const allowed = new Set(["kumod:8000", "tsa:8008", "sink:8025"]);
    for (const [name, [peer, ports]] of Object.entries(others))
      for (const port of ports) {
        expect(connectionAllowed(policies(), me, peer, port), `console->${name}:${port}`).toBe(
          allowed.has(`${name}:${port}`),
        );
        expect(connectionAllowed(policies(), peer, me, 8090), `${name}->console`).toBe(false);
      }
    for (const port of [25, 80, 443, 8000])
      expect(connectionAllowed(policies(), me, {}, port), `console->outside:${port}`).toBe(false);
    expect(connectionAllowed(policies(), {}, me, 8090), "outside->console").toBe(false);
    // kumod's API stays closed to every other pod.
    expect(connectionAllowed(policies(), others.sink?.[0] as Peer, others.kumod?.[0] as Peer, 8000)).toBe(false);
  });

  it("runs, from the image's start command and the Deployment's environment, finding kumod pods through DNS", async () => {
    const kumod = await new StandInKumod({
      received: { esmtp_listener: 0, http_listener: 42 },
      scheduled: { "gmail.com": 4 },
      readyQueues: [],
    }).start();
    const env = Object.fromEntries(
      (container(deployment, "console").env as K8sObject[]).map((e) => [e.name as string, e.value as string]),
    );
    // Loopback here instead of the pod's 0.0.0.0; "localhost" plays the headless Service.
    const app = await startConsole([], {
      ...env,
      CONSOLE_HOST: "127.0.0.1",
      CONSOLE_KUMOD_DNS: `localhost:${new URL(kumod.url).port}`,
    });
    try {
      expect((await fetch(new URL("/livez", app.url))).status).toBe(200);
      let res = await fetch(new URL("/api/state", app.url));
      for (let i = 0; res.status === 503 && i < 50; i++) {
        await new Promise((r) => setTimeout(r, 100));
        res = await fetch(new URL("/api/state", app.url));
      }
      const state = await res.json();
      expect(state.kumod.pods).toHaveLength(1);
      expect(state.kumod.pods[0].url).toBe(`${kumod.url}/`);
      expect(state.kumod.pods[0].queues).toMatchObject({ received: 42, scheduled: 4 });
      // The cluster's Service names do not resolve here: shown as unreachable, with the reason.
      expect(state.tsa.error).toMatch(/ENOTFOUND|EAI_AGAIN|no answer/);
      expect(state.sink.error).toMatch(/cannot reach the sink at http:\/\/sink:8025\//);
      expect((await fetch(new URL("/readyz", app.url))).status).toBe(200);
    } finally {
      await app.stop();
      await kumod.close();
    }
  });
});
