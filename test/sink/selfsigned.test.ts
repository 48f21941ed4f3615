import { execFile } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { beforeAll, expect, it } from "vitest";
import { selfSignedCertificate } from "../../sink/src/selfsigned.ts";
import { HOW_TO_GET, requireTool } from "../require-tool.ts";

const run = promisify(execFile);

beforeAll(() => requireTool("openssl", HOW_TO_GET.openssl));

it("makes a certificate that Node and OpenSSL parse, signed by its own key, valid now", async () => {
  const now = new Date("2026-11-23T12:00:00Z");
  const { cert, key } = selfSignedCertificate("sink.example.test", now);
  const x509 = new X509Certificate(cert);
  expect(x509.subject).toBe("CN=sink.example.test");
  expect(x509.issuer).toBe("CN=sink.example.test");
  expect(new Date(x509.validFrom).getTime()).toBeLessThan(now.getTime());
  expect(new Date(x509.validTo).getTime()).toBeGreaterThan(now.getTime() + 300 * 86_400_000);
  expect(x509.checkPrivateKey(createPrivateKey(key))).toBe(true);
  expect(x509.verify(x509.publicKey)).toBe(true);
  expect(selfSignedCertificate("sink.example.test", now).cert).not.toBe(cert);

  const dir = mkdtempSync(join(tmpdir(), "sink-cert-"));
  try {
    writeFileSync(join(dir, "c.pem"), cert);
    const { stdout } = await run("openssl", [
      "verify",
      "-attime",
      String(now.getTime() / 1000),
      "-CAfile",
      join(dir, "c.pem"),
      join(dir, "c.pem"),
    ]);
    expect(stdout.trim()).toBe(`${join(dir, "c.pem")}: OK`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
