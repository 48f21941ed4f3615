/**
 * STARTTLS material: PEM files (a mounted Secret) when SINK_TLS_CERT and SINK_TLS_KEY are set, otherwise a
 * self-signed certificate made at start when SINK_STARTTLS is true, otherwise no STARTTLS.
 */
import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContext } from "node:tls";
import { selfSignedCertificate } from "./selfsigned.ts";
import type { Settings } from "./settings.ts";

export interface TlsSetup {
  context: SecureContext | null;
  source: "files" | "generated" | "off";
}

export function setupTls(settings: Settings, fail: (code: number, msg: string, details: string[]) => never): TlsSetup {
  const { tlsCert, tlsKey } = settings;
  if (tlsCert !== undefined && tlsKey !== undefined) {
    try {
      return {
        context: createSecureContext({ cert: readFileSync(tlsCert), key: readFileSync(tlsKey) }),
        source: "files",
      };
    } catch (err) {
      return fail(2, "cannot load the STARTTLS certificate (SINK_TLS_CERT / SINK_TLS_KEY)", [
        `${tlsCert}, ${tlsKey}: ${(err as Error).message}`,
      ]);
    }
  }
  if (!settings.starttls) return { context: null, source: "off" };
  return { context: createSecureContext(selfSignedCertificate(settings.hostname)), source: "generated" };
}
