/**
 * Provider sites. kumod connects to the sink on one port per provider (SINK_SITE_PORTS), so the port a connection
 * arrived on says which provider kumod believes it is talking to; the sink greets and throttles as that provider.
 */

/** The site of connections to SINK_SMTP_PORT: every destination that is not a provider with a port of its own. */
export const DEFAULT_SITE = "other";

/** A site name: a lower-case DNS-style label, as used in SINK_SITE_PORTS and in the `sites` key of rules. */
export const SITE_NAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** How a provider's MX greets: the host name in its 220 banner and EHLO reply, and the banner's tail. */
interface Greeting {
  host: string;
  banner: string;
}

// Shaped like each provider's real banner; "kumomta-tilt sink" stays in every one, so no one takes it for the real
// provider.
const GREETINGS: Record<string, Greeting> = {
  google: { host: "mx.google.com", banner: "ESMTP kumomta-tilt sink - gsmtp" },
  yahoo: { host: "mta7.am0.yahoodns.net", banner: "ESMTP ready (kumomta-tilt sink)" },
  outlook: {
    host: "BL02EPF0001A0FE.olc.protection.outlook.com",
    banner: "Microsoft ESMTP MAIL Service ready (kumomta-tilt sink)",
  },
};

/** The greeting of a site; sites without a provider look (including `other`) greet as the sink's own host name. */
export function siteGreeting(site: string, hostname: string): Greeting {
  return GREETINGS[site] ?? { host: hostname, banner: "ESMTP kumomta-tilt sink" };
}
