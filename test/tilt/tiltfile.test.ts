import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse as parseEnv } from "dotenv";
import { execa } from "execa";
import { beforeAll, describe, expect, it } from "vitest";
import { parseAllDocuments, parse as parseYaml } from "yaml";
import { parseInjectArgs } from "../../scripts/lib/inject-args.ts";
import { inClusterConflict, splitInCluster } from "../../scripts/lib/inject-job.ts";
import { evaluateTiltfile, manifest, objectsOf, repoRoot, type TiltResult, toolBin } from "./tilt-result.ts";

const TRIGGER_MODE_MANUAL = 2;

// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects
const find = (objects: any[], kind: string, name: string) => {
  const obj = objects.find((o) => o.kind === kind && o.metadata.name === name);
  if (!obj) throw new Error(`${kind}/${name} not found`);
  return obj;
};
// biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects
const envOf = (obj: any, container: string): Record<string, string> => {
  // biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects
  const c = obj.spec.template.spec.containers.find((x: any) => x.name === container);
  // biome-ignore lint/suspicious/noExplicitAny: rendered Kubernetes objects
  return Object.fromEntries((c.env ?? []).filter((e: any) => "value" in e).map((e: any) => [e.name, e.value]));
};

async function overlayRender() {
  const out = await execa("kubectl", ["kustomize", "k8s/overlays/local"], { cwd: repoRoot });
  return parseAllDocuments(out.stdout).map((d) => d.toJS());
}

describe("Tiltfile evaluated by the real tilt binary", () => {
  let defaults: TiltResult;
  let scaled: TiltResult;

  beforeAll(async () => {
    defaults = await evaluateTiltfile();
    scaled = await evaluateTiltfile(["--mta-replicas", "5", "--tsa-replicas", "4", "--proxies", "3"]);
  }, 240_000);

  it("evaluates cleanly on a local kind context", () => {
    expect(defaults.exitCode, defaults.stderr).toBe(0);
    expect(scaled.exitCode, scaled.stderr).toBe(0);
  });

  it("names resources for people and leaves nothing uncategorized", () => {
    const names = defaults.manifests.map((m) => m.Name);
    expect(names).toEqual(expect.arrayContaining(["kumod", "tsa", "dragonfly", "mx-dns", "sink", "cluster-config"]));
    expect(names).not.toContain("uncategorized");
    expect(manifest(defaults, "kumod").Labels).toHaveProperty("kumomta");
    expect(manifest(defaults, "tsa").Labels).toHaveProperty("kumomta");
    expect(manifest(defaults, "dragonfly").Labels).toHaveProperty("backing");
    expect(manifest(defaults, "sink").Labels).toHaveProperty("backing");
    expect(manifest(defaults, "mx-dns").Labels).toHaveProperty("backing");
  });

  it("starts kumod only after Dragonfly, mx-dns, the sink and the proxies, and tsa-daemon after mx-dns", () => {
    expect(manifest(defaults, "kumod").ResourceDependencies).toEqual(
      expect.arrayContaining(["dragonfly", "mx-dns", "sink", "proxy"]),
    );
    expect(manifest(defaults, "tsa").ResourceDependencies).toEqual(["mx-dns"]);
  });

  it("groups every object without pods under cluster-config, namespace and generated credentials included", () => {
    const kinds = objectsOf(manifest(defaults, "cluster-config")).map((o) => o.kind);
    expect(kinds).toEqual(expect.arrayContaining(["Namespace", "ConfigMap", "Secret", "NetworkPolicy"]));
    expect(kinds).not.toContain("StatefulSet");
  });

  it("forwards kumod 8000, sink 8025 and TSA 8008 to localhost and links the sink's stats and metrics", () => {
    const forwards = (name: string) =>
      manifest(defaults, name).DeployTarget.portForwardTemplateSpec.forwards.map(
        (f: { localPort: number; containerPort: number }) => `${f.localPort}:${f.containerPort}`,
      );
    expect(forwards("kumod")).toEqual(["8000:8000"]);
    expect(forwards("sink")).toEqual(["8025:8025"]);
    expect(forwards("tsa")).toEqual(["8008:8008"]);
    const links = manifest(defaults, "sink").DeployTarget.Links.map(
      (l: { URL: { Host: string; Path: string } }) => `${l.URL.Host}${l.URL.Path}`,
    );
    expect(links).toEqual(expect.arrayContaining(["localhost:8025/api/stats", "localhost:8025/metrics"]));
  });

  it("builds the sink image from sink/ with live update of its sources", () => {
    const [image] = manifest(defaults, "sink").ImageTargets ?? [];
    expect(image.selector).toBe("kumomta-tilt-sink");
    expect(image.BuildDetails.context).toBe(path.join(repoRoot, "sink"));
    const syncs = image.LiveUpdateSpec.syncs.map((s: { localPath: string; containerPath: string }) => [
      s.localPath,
      s.containerPath,
    ]);
    expect(syncs).toContainEqual(["sink/src", "/app/src"]);
    expect(image.overrideCommand.command).toEqual(expect.arrayContaining(["watch", "src/main.ts"]));
    const sink = find(objectsOf(manifest(defaults, "sink")), "Deployment", "sink");
    expect(sink.spec.template.spec.containers[0].image).toMatch(/^kumomta-tilt-sink/);
  });

  it("keeps the overlay's replica counts when no setting is given", async () => {
    const rendered = await overlayRender();
    for (const name of ["kumod", "tsa", "proxy"]) {
      const tilt = find(objectsOf(manifest(defaults, name)), "StatefulSet", name);
      expect(tilt.spec.replicas).toBe(find(rendered, "StatefulSet", name).spec.replicas);
    }
  });

  it("--mta-replicas 5 --tsa-replicas 4 scales both StatefulSets and the TSA publish configuration", () => {
    const kumod = find(objectsOf(manifest(scaled, "kumod")), "StatefulSet", "kumod");
    const tsaObjects = objectsOf(manifest(scaled, "tsa"));
    const tsa = find(tsaObjects, "StatefulSet", "tsa");
    expect(kumod.spec.replicas).toBe(5);
    expect(tsa.spec.replicas).toBe(4);
    const env = envOf(kumod, "kumod");
    expect(env.TSA_REPLICAS).toBe("4");
    expect(env.TSA_STS).toBe(tsa.metadata.name);
    expect(env.TSA_HEADLESS).toBe(tsa.spec.serviceName);
    const headless = find(tsaObjects, "Service", tsa.spec.serviceName);
    expect(headless.spec.clusterIP).toBe("None");
  });

  it("--proxies 3 runs three proxy pods, kumod's pool uses three, and each pod's Service is listed with them", () => {
    const proxyObjects = objectsOf(manifest(scaled, "proxy"));
    expect(find(proxyObjects, "StatefulSet", "proxy").spec.replicas).toBe(3);
    expect(envOf(find(objectsOf(manifest(scaled, "kumod")), "StatefulSet", "kumod"), "kumod").PROXY_REPLICAS).toBe("3");
    const services = proxyObjects.filter((o) => o.kind === "Service").map((o) => o.metadata.name);
    expect(services).toEqual(expect.arrayContaining(["proxy-0", "proxy-1", "proxy-2", "proxy-3", "proxy-headless"]));
  });

  it("refuses more proxies than the pool has sources, saying why", async () => {
    const five = await evaluateTiltfile(["--proxies", "5"]);
    expect(five.exitCode).not.toBe(0);
    expect(five.stderr).toMatch(
      /--proxies must be a whole number from 1 to 4 \(policy\/sources\.toml has sources proxy-0\.\.3\), got "5"/,
    );
  }, 120_000);

  it("--sink-starttls deploys the sink-starttls overlay, with the other settings still applied", async () => {
    expect(envOf(find(objectsOf(manifest(defaults, "kumod")), "StatefulSet", "kumod"), "kumod").SINK_TLS).toBe(
      "Disabled",
    );
    const tls = await evaluateTiltfile(["--sink-starttls", "--mta-replicas", "2"]);
    expect(tls.exitCode, tls.stderr).toBe(0);
    const kumod = find(objectsOf(manifest(tls, "kumod")), "StatefulSet", "kumod");
    expect(kumod.spec.replicas).toBe(2);
    expect(envOf(kumod, "kumod").SINK_TLS).toBe("OpportunisticInsecure");
    const sink = find(objectsOf(manifest(tls, "sink")), "Deployment", "sink");
    expect(envOf(sink, "sink").SINK_STARTTLS).toBe("true");
    expect(sink.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem).toBe(false);
  }, 120_000);

  it("offers manual buttons that run npm scripts, one per sink scenario", async () => {
    const pkg = JSON.parse(await readFile(path.join(repoRoot, "package.json"), "utf8"));
    const sinkConfig = parseYaml(await readFile(path.join(repoRoot, "sink/config/sink.yaml"), "utf8"));
    const buttons = defaults.manifests.filter((m) => m.Labels?.actions);
    const names = buttons.map((b) => b.Name);
    expect(names).toEqual(expect.arrayContaining(["send-test-message", "send-burst", "cluster-status"]));
    for (const scenario of Object.keys(sinkConfig.scenarios)) expect(names).toContain(`sink-scenario-${scenario}`);
    for (const b of buttons) {
      expect(b.TriggerMode, b.Name).toBe(TRIGGER_MODE_MANUAL);
      const args: string[] = b.DeployTarget.UpdateCmdSpec.args;
      expect(args.slice(0, 3)).toEqual(["npm", "run", "--silent"]);
      expect(pkg.scripts, `${b.Name} runs npm script ${args[3]}`).toHaveProperty(args[3] as string);
    }
  });

  it("offers load-test: a default in-cluster load with --verify, once kumod, the sink and the console's image are up", () => {
    const b = manifest(defaults, "load-test");
    expect(b.Labels).toHaveProperty("actions");
    const args: string[] = b.DeployTarget.UpdateCmdSpec.args;
    expect(args.slice(3, 5)).toEqual(["inject", "--"]);
    const { inCluster, argv } = splitInCluster(args.slice(5));
    expect(inCluster).toBe(true);
    // The injector's own parser and the --in-cluster rules accept the button's command line.
    const opts = parseInjectArgs(argv);
    expect(inClusterConflict(opts)).toBeUndefined();
    expect(opts).toMatchObject({ verify: true });
    expect(opts.count).toBeGreaterThan(0);
    expect(opts.domains.map((d) => d.domain)).toEqual(expect.arrayContaining(["gmail.com", "yahoo.com"]));
    expect(b.ResourceDependencies).toEqual(expect.arrayContaining(["kumod", "sink", "console"]));
  });

  it("sends the console image's build every file its Dockerfile copies (the in-cluster injector included)", () => {
    const [image] = manifest(defaults, "console").ImageTargets ?? [];
    expect(image.selector).toBe("kumomta-tilt-console");
    const dockerfile: string = image.BuildDetails.dockerfileContents;
    const final = dockerfile.split(/^(?=FROM\s)/m).at(-1) ?? "";
    const copied = [...final.matchAll(/^COPY (?!--)(.+) \S+$/gm)].flatMap((m) => (m[1] as string).split(" "));
    expect(copied).toEqual(expect.arrayContaining(["scripts/inject.ts", "sample_http_inject_payload.json"]));
    // Every ignore list of the context (Tiltfile's `only`, the Dockerfile's .dockerignore) lets each source in.
    const lists = (image.BuildDetails.contextIgnores as { patterns?: string[] }[]).filter((i) => i.patterns);
    expect(lists.length).toBeGreaterThan(0);
    for (const { patterns } of lists) for (const src of copied) expect(patterns, src).toContain(`!${src}`);
  });

  it("seeds credentials before rendering: the Secret Tilt applies holds the password the scripts use", async () => {
    const env = parseEnv(await readFile(path.join(repoRoot, ".env")));
    expect(env.KUMO_HTTP_PASSWORD?.length).toBeGreaterThanOrEqual(16);
    expect(defaults.secretValues.has(env.KUMO_HTTP_PASSWORD as string)).toBe(true);
  });

  it("relaxes the read-only root filesystem for the sink only, for live update", async () => {
    const sink = find(objectsOf(manifest(defaults, "sink")), "Deployment", "sink");
    expect(sink.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem).toBe(false);
    const rendered = find(await overlayRender(), "Deployment", "sink");
    expect(rendered.spec.template.spec.containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
  });
});

describe("Tiltfile guards", () => {
  it("refuses a cloud context with a message that says how to proceed", async () => {
    const result = await evaluateTiltfile([], { context: "gke_acme-prod_europe-west1_mail" });
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toContain("kumomta-tilt only deploys to local clusters");
    expect(result.stderr).toContain("allow-k8s-contexts");
  });

  it("leaves clusters it cannot identify to Tilt's production guard, unless the user vouches for them", async () => {
    const unknown = await evaluateTiltfile([], { context: "mail-staging" });
    expect(unknown.exitCode).toBe(5);
    expect(unknown.stderr).toMatch(/mail-staging might be (a )?production/);
    const vouched = await evaluateTiltfile(["--allow-k8s-contexts", "mail-staging"], { context: "mail-staging" });
    expect(vouched.exitCode, vouched.stderr).toBe(0);
  });

  it.each(["k3d-k3s-default", "minikube", "docker-desktop", "rancher-desktop", "orbstack"])(
    "accepts the local cluster %s",
    async (context) => {
      const result = await evaluateTiltfile([], { context });
      expect(result.exitCode, result.stderr).toBe(0);
    },
  );

  it.each([["0"], ["three"], ["-1"]])("rejects --mta-replicas %s clearly", async (value) => {
    const result = await evaluateTiltfile(["--mta-replicas", value]);
    expect(result.exitCode).toBe(5);
    expect(result.stderr).toContain("--mta-replicas must be a whole number from 1 to 20");
  });
});

describe("Tiltfile and workflow hygiene", () => {
  it("is formatted and lint-clean under buildifier", async () => {
    // Bazel's Args:/Returns: docstring sections mean nothing to Tilt; every other buildifier warning applies.
    const run = await execa(
      path.join(repoRoot, "node_modules/.bin/buildifier"),
      [
        "--mode=check",
        "--lint=warn",
        "--warnings=-function-docstring-args,-function-docstring-return",
        "--type=default",
        "Tiltfile",
      ],
      { cwd: repoRoot, reject: false },
    );
    expect(run.exitCode, `${run.stdout}\n${run.stderr}`).toBe(0);
  });

  it("ships a GitHub Actions end-to-end workflow that actionlint accepts", async () => {
    const run = await execa(toolBin("actionlint"), ["-color=false"], { cwd: repoRoot, reject: false });
    expect(run.exitCode, run.stdout).toBe(0);
    const workflow = await readFile(path.join(repoRoot, ".github/workflows/e2e.yml"), "utf8");
    for (const step of ["tilt ci", "npm run inject -- --verify", "npm run reset -- --yes"]) {
      expect(workflow).toContain(step);
    }
  });
});
