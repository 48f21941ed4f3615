/**
 * No container engine runs in CI, so the image definition is checked statically: pinned base, non-root numeric
 * user, production dependencies only, and a start command that is the one every protocol test runs.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { versionAtLeast } from "../../scripts/lib/doctor-checks.ts";
import { imageCommand, SINK_DIR } from "./helpers.ts";

const dockerfile = readFileSync(join(SINK_DIR, "Dockerfile"), "utf8");
const pkg = JSON.parse(readFileSync(join(SINK_DIR, "package.json"), "utf8")) as {
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies?: Record<string, string>;
};
const stages = dockerfile.split(/^(?=FROM\s)/m).filter((s) => s.startsWith("FROM"));
const final = stages[stages.length - 1] ?? "";

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

describe("sink/Dockerfile", () => {
  it("is multi-stage and pins every base image to an exact version", () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    for (const stage of stages) {
      const image = stage.match(/^FROM\s+(\S+)/)?.[1] ?? "";
      expect(image, image).toMatch(/^node:\d+\.\d+\.\d+-[a-z0-9.-]+$|@sha256:[0-9a-f]{64}$/);
    }
  });

  it("runs as a numeric non-root user in /app", () => {
    const user = final.match(/^USER\s+(\S+)\s*$/m)?.[1];
    expect(user).toMatch(/^\d+(:\d+)?$/);
    expect(Number(user?.split(":")[0])).toBeGreaterThan(0);
    expect(final).toMatch(/^WORKDIR \/app$/m);
  });

  it("installs production dependencies only, from the lockfile", () => {
    expect(dockerfile).toMatch(/RUN npm ci --omit=dev\b/);
    expect(dockerfile).toMatch(/COPY package\.json package-lock\.json/);
    // Every package the sink imports at run time is a production dependency.
    const imported = new Set<string>();
    for (const file of sourceFiles(join(SINK_DIR, "src"))) {
      for (const m of readFileSync(file, "utf8").matchAll(/from\s+"([^".][^"]*)"/g)) {
        const spec = m[1] as string;
        if (!spec.startsWith("node:"))
          imported.add(spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : (spec.split("/")[0] as string));
      }
    }
    for (const dep of imported) expect(Object.keys(pkg.dependencies), dep).toContain(dep);
    // tsx runs the TypeScript in the image, so it is a production dependency too.
    expect(Object.keys(pkg.dependencies)).toContain("tsx");
  });

  it("starts with the command the tests start, which is also `npm start`", () => {
    const { argv } = imageCommand();
    expect(argv).toEqual(["node", "--import", "tsx", "src/main.ts"]);
    // An `exec` in front only replaces npm's script shell, so that signals reach node itself.
    expect(pkg.scripts.start?.replace(/^exec /, "")).toBe(argv.join(" "));
    // Owned by the runtime user (--chown) so Tilt's live update can write the synced sources.
    expect(final).toMatch(/^COPY --chown=1000:1000 src \.\/src$/m);
    expect(final).toMatch(/^COPY --chown=1000:1000 config \.\/config$/m);
  });

  it("keeps node_modules and local clutter out of the build context", () => {
    const ignore = readFileSync(join(SINK_DIR, ".dockerignore"), "utf8").split("\n");
    expect(ignore).toContain("node_modules");
  });
});

describe("the supported Node version", () => {
  const root = join(SINK_DIR, "..");
  const read = (file: string) => readFileSync(join(root, file), "utf8");
  const pinned = read(".node-version").trim();
  const manifests = ["package.json", "sink/package.json"].map(
    (file) =>
      JSON.parse(read(file)) as { engines: { node: string }; devDependencies: Record<string, string | undefined> },
  );

  it("is pinned once, in .node-version, and the image, the test run and the e2e workflow use that pin", () => {
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    for (const stage of stages) expect(stage.match(/^FROM\s+(\S+)/)?.[1]).toMatch(new RegExp(`^node:${pinned}-`));
    // .ci/run runs the whole suite on the Node that install-tools.sh takes from the npm registry at this version.
    expect(read(".ci/install-tools.sh")).toContain('NODE_VERSION=$(cat "$root/.node-version")');
    expect(read(".ci/run")).toContain('export PATH="$PWD/.tools/node/bin:$PATH"');
    const e2e = parseYaml(read(".github/workflows/e2e.yml")) as {
      jobs: Record<string, { steps: { uses?: string; with?: Record<string, unknown> }[] }>;
    };
    const setups = Object.values(e2e.jobs).flatMap((j) =>
      j.steps.filter((s) => s.uses?.startsWith("actions/setup-node")),
    );
    expect(setups.length).toBeGreaterThan(0);
    for (const s of setups) expect(s.with).toMatchObject({ "node-version-file": ".node-version" });
  });

  it("satisfies engines, which the root and the sink declare alike, in the same major", () => {
    const engines = new Set(manifests.map((m) => m.engines.node));
    expect([...engines]).toHaveLength(1);
    const minimum = /^>=(\d+)\.\d+$/.exec([...engines][0] as string);
    expect(minimum, "engines.node is >=MAJOR.MINOR (npm run doctor reads it)").not.toBeNull();
    expect(versionAtLeast(pinned, (minimum as RegExpExecArray)[0].slice(2))).toBe(true);
    expect(pinned.split(".")[0]).toBe(minimum?.[1]);
  });

  it("is the major @types/node describes", () => {
    for (const m of manifests) expect(m.devDependencies["@types/node"]?.split(".")[0]).toBe(pinned.split(".")[0]);
  });
});
