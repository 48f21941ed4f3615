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
