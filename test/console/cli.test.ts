import http from "node:http";
import type { AddressInfo } from "node:net";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { CONSOLE_COMMAND, launchChromium, repoRoot } from "./stand-ins.ts";

const run = (args: string[]) => {
  const [file, ...rest] = CONSOLE_COMMAND as [string, ...string[]];
  return execa(file, [...rest, ...args], { cwd: repoRoot, reject: false, timeout: 30_000 });
};

describe("npm run console: command line", () => {
  it("explains itself with --help", async () => {
    const r = await run(["--help"]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain("Usage: npm run console --");
    expect(r.stdout).toContain("--kumod-dns HOST:PORT");
  });

  it.each([
    [["--kumod", "ftp://kumod:8000"], '--kumod "ftp://kumod:8000" is not an http:// URL'],
    [["--kumod", "http://a:8000", "--kumod-dns", "kumod-headless:8000"], "give --kumod or --kumod-dns, not both"],
    [["--kumod-dns", "kumod-headless"], "must be HOST:PORT"],
    [["--interval", "5000"], "--interval must be a whole number from 200 to 2000"],
    [["--colour"], "Unknown option '--colour'"],
  ])("rejects %j with exit code 2, the reason and a hint", async (args, message) => {
    const r = await run([...args, "--tsa", "http://127.0.0.1:9", "--sink", "http://127.0.0.1:9"]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain(`error: `);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain("hint: Run `npm run console -- --help`");
  });

  it("says which port is taken and how to pick another (exit 19)", async () => {
    const taken = http.createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const port = (taken.address() as AddressInfo).port;
    try {
      const r = await run(["--port", String(port), "--kumod", "http://127.0.0.1:9", "--tsa", "http://127.0.0.1:9"]);
      expect(r.exitCode).toBe(19);
      expect(r.stderr).toContain(`error: cannot listen on 127.0.0.1:${port}: EADDRINUSE`);
      expect(r.stderr).toContain("hint: ");
      expect(r.stderr).toContain("--port");
    } finally {
      taken.close();
    }
  });
});

describe("the browser tests' requirement", () => {
  it("fails, not skips, without chromium, in one line saying how to install it", async () => {
    await expect(launchChromium("/nonexistent/chromium")).rejects.toThrow(
      /^chromium not found at \/nonexistent\/chromium: install Debian's package \(apt-get update && apt-get install -y chromium\) or set CHROMIUM_PATH$/,
    );
  });
});
