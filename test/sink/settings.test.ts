import { describe, expect, it } from "vitest";
import { parseSettings, SettingsError } from "../../sink/src/settings.ts";

describe("settings from the environment", () => {
  it("has the documented defaults", () => {
    const s = parseSettings({ SINK_SEED: "3" }, "/app");
    expect(s).toMatchObject({
      host: "0.0.0.0",
      smtpPort: 2525,
      httpPort: 8025,
      configPath: "/app/config/sink.yaml",
      seed: 3,
      scenario: undefined,
      tlsCert: undefined,
      starttls: false,
    });
  });

  it("resolves a relative SINK_CONFIG against the sink directory and keeps absolute ones", () => {
    expect(parseSettings({ SINK_CONFIG: "x/y.yaml" }, "/app").configPath).toBe("/app/x/y.yaml");
    expect(parseSettings({ SINK_CONFIG: "/etc/sink/sink.yaml" }, "/app").configPath).toBe("/etc/sink/sink.yaml");
  });

  it("reads SINK_SITE_PORTS as provider sites in order; none when unset", () => {
    expect(parseSettings({}, "/app").sitePorts).toEqual([]);
    expect(parseSettings({ SINK_SITE_PORTS: " google=2526, yahoo = 2527,,outlook=2528 " }, "/app").sitePorts).toEqual([
      { site: "google", port: 2526 },
      { site: "yahoo", port: 2527 },
      { site: "outlook", port: 2528 },
    ]);
    expect(parseSettings({ SINK_SITE_PORTS: "google=0,yahoo=0" }, "/app").sitePorts).toHaveLength(2);
  });

  it("explains each invalid SINK_SITE_PORTS entry", () => {
    try {
      parseSettings({ SINK_SITE_PORTS: "google=2526,yahoo=8025,outlook=2526,x=70000,mx_1=3000,aol:3001" }, "/app");
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(SettingsError);
      const details = (err as SettingsError).details.map((d) => d.replace(/^SINK_SITE_PORTS="[^"]*": /, ""));
      expect(details).toEqual([
        "port 8025 of yahoo is already used by SINK_HTTP_PORT",
        "port 2526 of outlook is already used by google",
        "port 70000 of x must be from 1 to 65535",
        `site "mx_1" must be a lower-case label (a-z, 0-9, inner '-')`,
        `"aol:3001" is not site=port (e.g. google=2526,yahoo=2527,outlook=2528)`,
      ]);
    }
  });

  it("reports every invalid variable at once", () => {
    try {
      parseSettings(
        {
          SINK_SMTP_PORT: "70000",
          SINK_IDLE_TIMEOUT_MS: "soon",
          SINK_TLS_CERT: "/c.pem",
          SINK_LOG_CONNECTIONS: "maybe",
        },
        "/app",
      );
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(SettingsError);
      const details = (err as SettingsError).details;
      expect(details).toHaveLength(4);
      expect(details[0]).toMatch(/^SINK_SMTP_PORT="70000": must be an integer from 0 to 65535/);
      expect(details.join("\n")).toMatch(/SINK_TLS_CERT and SINK_TLS_KEY: set both/);
    }
  });
});
