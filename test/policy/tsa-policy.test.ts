import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { callsOf, credentialsDir, type HarnessOutput, kumodEnv, onlyCall, runPolicy } from "./lua-harness.ts";

const tsaEnv = (overrides: Record<string, string> = {}) => ({
  POD_NAMESPACE: "kumomta",
  KUMO_TRUSTED_HOSTS: "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fd00::/8",
  TSA_STATE_DIR: "/var/lib/tsa",
  ...overrides,
});

describe("tsa-daemon policy (policy/tsa_init.lua in Lua 5.4)", () => {
  let out: HarnessOutput;
  let kumod: HarnessOutput;
  let authDir: string;

  beforeAll(async () => {
    out = await runPolicy("tsa_init.lua", tsaEnv(), ["init", "tsa-shaping"]);
    authDir = await credentialsDir("u", "p");
    kumod = await runPolicy("init.lua", kumodEnv(authDir), ["init", "message", "a@example.org", ""]);
  });
  afterAll(() => rm(authDir, { recursive: true, force: true }));

  it("loads and answers tsa_init and tsa_load_shaping_data", () => {
    expect(out.error).toBeUndefined();
    expect(out.results.map((r) => [r.step, r.ok])).toEqual([
      ["init", true],
      ["tsa-shaping", true],
    ]);
    expect(out.results[1]?.result).toEqual({ returned_shaping: true });
  });

  it("resolves MX through mx-dns, as kumod does, from the first shaping load on", () => {
    expect(onlyCall(out, "kumo.dns.lookup_addr").args.name).toBe("mx-dns.kumomta.svc.cluster.local");
    expect(onlyCall(out, "kumo.dns.configure_resolver").args.name_servers).toEqual(["10.96.0.53:53"]);
  });

  it("listens on 0.0.0.0:8008 trusting loopback plus the pod networks", () => {
    expect(onlyCall(out, "tsa.start_http_listener").args).toEqual({
      listen: "0.0.0.0:8008",
      trusted_hosts: ["127.0.0.1", "::1", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fd00::/8"],
    });
  });

  it("keeps its state under TSA_STATE_DIR, configured before the listener starts", async () => {
    const fns = out.calls.map((c) => c.fn);
    expect(fns.indexOf("tsa.configure_tsa_db_path")).toBeLessThan(fns.indexOf("tsa.start_http_listener"));
    expect(onlyCall(out, "tsa.configure_tsa_db_path").args).toEqual({ path: "/var/lib/tsa/tsa.db" });
    const moved = await runPolicy("tsa_init.lua", tsaEnv({ TSA_STATE_DIR: "/data/tsa" }), ["init"]);
    expect(onlyCall(moved, "tsa.configure_tsa_db_path").args).toEqual({ path: "/data/tsa/tsa.db" });
  });

  it("loads exactly the shaping files kumod loads (minus kumod's subscription to TSA itself)", () => {
    const tsaFiles = onlyCall(out, "kumo.shaping.load").args.files;
    expect(tsaFiles).toEqual([
      "/opt/kumomta/share/policy-extras/shaping.toml",
      "/opt/kumomta/share/community/shaping.toml",
      "/opt/kumomta/etc/policy/shaping.toml",
    ]);
    const kumodFiles: string[] = callsOf(kumod, "kumo.shaping.load")[0]?.args.files;
    expect(kumodFiles.filter((f) => !f.startsWith("http://"))).toEqual(tsaFiles);
  });

  it("refuses 0.0.0.0/0 in KUMO_TRUSTED_HOSTS", async () => {
    const bad = await runPolicy("tsa_init.lua", tsaEnv({ KUMO_TRUSTED_HOSTS: "0.0.0.0/0" }), ["init"]);
    expect(bad.ok).toBe(false);
    expect(bad.exitCode).toBe(1);
    expect(bad.error).toMatch(/KUMO_TRUSTED_HOSTS="0\.0\.0\.0\/0" is invalid/);
  });
});
