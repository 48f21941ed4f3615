/**
 * No container engine runs in CI, so the image definition is checked statically: pinned base, non-root numeric
 * user, production dependencies only, and a start command that is the one every protocol test runs.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
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
    expect(pkg.scripts.start).toBe(argv.join(" "));
    // Owned by the runtime user (--chown) so Tilt's live update can write the synced sources.
    expect(final).toMatch(/^COPY --chown=1000:1000 src \.\/src$/m);
    expect(final).toMatch(/^COPY --chown=1000:1000 config \.\/config$/m);
  });

  it("keeps node_modules and local clutter out of the build context", () => {
    const ignore = readFileSync(join(SINK_DIR, ".dockerignore"), "utf8").split("\n");
    expect(ignore).toContain("node_modules");
  });
});
