import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { execa } from "execa";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { type K8sObject, render, repoRoot, runSeed } from "./render.ts";

interface Exception {
  test: string;
  objects?: string[];
  reason: string;
}
interface Config {
  ignoreContainerCpuLimit?: boolean;
  exceptions: Exception[];
}

const KUBE_SCORE = path.join(repoRoot, ".tools/bin/kube-score");

function kubeScore(objects: K8sObject[], args: string[]) {
  if (!existsSync(KUBE_SCORE))
    throw new Error(`${KUBE_SCORE} is missing: run .ci/install-tools.sh (it builds kube-score v1.20.0)`);
  return execa(KUBE_SCORE, ["score", ...args, "-"], {
    input: objects.map((o) => stringify(o)).join("---\n"),
    reject: false,
  });
}

const key = (o: K8sObject) => `${o.kind}/${o.metadata.name}`;

describe("kube-score on the rendered local overlay", () => {
  let objects: K8sObject[];
  let config: Config;

  beforeAll(async () => {
    const seeded = await runSeed(repoRoot, ["--quiet"]);
    expect(seeded.exitCode, seeded.stderr).toBe(0);
    objects = await render(repoRoot);
    config = parseYaml(await readFile(path.join(repoRoot, "k8s/kube-score.yaml"), "utf8"));
  });

  it("finds nothing, not even warnings, outside the justified exceptions in k8s/kube-score.yaml", async () => {
    const annotated = objects.map((o) => {
      const tests = config.exceptions.filter((e) => e.objects?.includes(key(o))).map((e) => e.test);
      if (tests.length === 0) return o;
      const copy = structuredClone(o);
      copy.metadata.annotations = { ...copy.metadata.annotations, "kube-score/ignore": tests.join(",") };
      return copy;
    });
    const run = await kubeScore(annotated, [
      "--output-format",
      "ci",
      "--exit-one-on-warning",
      ...(config.ignoreContainerCpuLimit ? ["--ignore-container-cpu-limit"] : []),
      ...config.exceptions.filter((e) => !e.objects).flatMap((e) => ["--ignore-test", e.test]),
    ]);
    const findings = run.stdout.split("\n").filter((l) => /^\[(CRITICAL|WARNING)\]/.test(l));
    expect(findings).toEqual([]);
    expect(run.exitCode, run.stderr).toBe(0);
  });

  it("has a reason for every exception and no exception that suppresses nothing", async () => {
    const run = await kubeScore(objects, ["--output-format", "json"]);
    const report: { type_meta: { kind: string }; object_meta: { name: string }; checks: K8sObject[] }[] = JSON.parse(
      run.stdout,
    );
    const findings = new Set(
      report.flatMap((r) =>
        r.checks
          .filter((c) => !c.skipped && c.grade < 10)
          .map((c) => `${r.type_meta.kind}/${r.object_meta.name}:${c.check.id}`),
      ),
    );
    const all = [...findings];
    for (const e of config.exceptions) {
      expect(e.reason?.length ?? 0, `${e.test} needs a reason`).toBeGreaterThan(20);
      if (e.objects) for (const o of e.objects) expect(findings, `${e.test} on ${o}`).toContain(`${o}:${e.test}`);
      else
        expect(
          all.some((f) => f.endsWith(`:${e.test}`)),
          `${e.test} suppresses nothing`,
        ).toBe(true);
    }
    if (config.ignoreContainerCpuLimit) {
      const cpu = report.flatMap((r) => r.checks).filter((c) => c.check.id === "container-resources" && c.grade < 10);
      expect(JSON.stringify(cpu)).toContain("CPU limit is not set");
    }
  });
});
