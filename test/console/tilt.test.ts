/** The console's part of the Tiltfile, evaluated by the real tilt binary. */
import { beforeAll, describe, expect, it } from "vitest";
import { evaluateTiltfile, manifest, objectsOf, repoRoot, type TiltResult } from "../tilt/tilt-result.ts";

describe("Tiltfile: the console", () => {
  let tilt: TiltResult;

  beforeAll(async () => {
    tilt = await evaluateTiltfile();
    expect(tilt.exitCode, tilt.stderr).toBe(0);
  }, 120_000);

  it("is a resource with one port-forward, 8090, and a link to the page", () => {
    const resource = manifest(tilt, "console");
    const forwards = resource.DeployTarget.portForwardTemplateSpec.forwards.map(
      (f: { localPort: number; containerPort: number }) => `${f.localPort}:${f.containerPort}`,
    );
    expect(forwards).toEqual(["8090:8090"]);
    const links = resource.DeployTarget.Links.map(
      (l: { URL: { Host: string; Path: string } }) => l.URL.Host + l.URL.Path,
    );
    expect(links).toEqual(["localhost:8090/"]);
    expect(Object.keys(resource.Labels ?? {})).toEqual(["kumomta"]);
    expect(objectsOf(resource).map((o) => `${o.kind}/${o.metadata.name}`)).toEqual(["Deployment/console"]);
  });

  it("builds its image from the repository root, with only what the image copies in the context", () => {
    const [image] = manifest(tilt, "console").ImageTargets ?? [];
    expect(image.selector).toBe("kumomta-tilt-console");
    expect(image.BuildDetails.context).toBe(repoRoot);
    expect(image.BuildDetails.dockerfileContents).toContain(
      'ENTRYPOINT ["node", "--import", "tsx", "scripts/console/main.ts"]',
    );
    const patterns = image.BuildDetails.contextIgnores
      .filter((i: { basePath: string }) => i.basePath === repoRoot)
      .map((i: { patterns: string[] }) => i.patterns);
    // Exactly what the Dockerfile copies from the context (COPY lines without --from), nothing else.
    const copied = image.BuildDetails.dockerfileContents
      .split("\n")
      .filter((l: string) => /^COPY (?!--from)/.test(l))
      .flatMap((l: string) => l.split(/\s+/).slice(1, -1));
    const context = patterns.find((p: string[]) => p[0] === "**");
    expect(context?.slice(1).sort()).toEqual([...new Set(copied)].map((c) => `!${c}`).sort());
    const deployment = objectsOf(manifest(tilt, "console"))[0];
    expect(deployment.spec.template.spec.containers[0].image).toMatch(/^kumomta-tilt-console/);
  });
});
