import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { assertToolRan, policyDir, repoRoot } from "./lua-harness.ts";

const LUAC = "luac5.4";
const luacheckConfig = path.join(repoRoot, "test/policy/.luacheckrc");

async function luaFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => f.endsWith(".lua")).map((f) => path.join(dir, f));
}

// Debian's luac5.4 aborts (double free) when given several files at once, so
// each file is checked in its own invocation.
async function syntaxCheck(file: string) {
  const result = await execa(LUAC, ["-p", file], { reject: false });
  assertToolRan(result, LUAC);
  return result;
}

async function luacheck(args: string[]) {
  const result = await execa("luacheck", ["--config", luacheckConfig, "--no-color", "--codes", ...args], {
    cwd: repoRoot,
    reject: false,
  });
  assertToolRan(result, "luacheck");
  return result;
}

describe("Lua policy static checks", () => {
  it("finds the policy files the ConfigMap is generated from", async () => {
    const names = (await luaFiles(policyDir)).map((f) => path.basename(f)).sort();
    expect(names).toEqual([
      "init.lua",
      "proxy_init.lua",
      "tilt_auth.lua",
      "tilt_dns.lua",
      "tilt_egress.lua",
      "tilt_settings.lua",
      "tsa_init.lua",
    ]);
  });

  it("compiles every policy and harness file with luac5.4 -p", async () => {
    const files = [...(await luaFiles(policyDir)), ...(await luaFiles(path.join(repoRoot, "test/policy/harness")))];
    for (const file of files) {
      const result = await syntaxCheck(file);
      expect(result.exitCode, `${file}: ${result.stderr}`).toBe(0);
    }
  });

  it("reports a syntax error (the check can fail)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "luac-"));
    try {
      const broken = path.join(dir, "broken.lua");
      await writeFile(broken, "kumo.on('init', function()\n");
      const result = await syntaxCheck(broken);
      expect(result.exitCode).not.toBe(0);
      expect(result.stderr).toMatch(/broken\.lua:2:.*'end' expected/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("passes luacheck with no warnings", async () => {
    const result = await luacheck(["policy", "test/policy/harness"]);
    expect(result.exitCode, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/Total: 0 warnings \/ 0 errors/);
  });

  it("luacheck flags an accidental global (the check can fail)", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "luacheck-"));
    try {
      const leaky = path.join(dir, "leaky.lua");
      await writeFile(leaky, "local kumo = require 'kumo'\nkumo.on('init', function() helper = 1 end)\n");
      const result = await luacheck([leaky]);
      expect(result.exitCode).not.toBe(0);
      expect(result.stdout).toMatch(/\(W111\) setting non-standard global variable 'helper'/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
