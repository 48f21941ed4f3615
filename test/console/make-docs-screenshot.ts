/**
 * Makes docs/console.png: the console during a send-burst (1,000 messages at 200/s over gmail.com, yahoo.com,
 * outlook.com and example.com, as Tilt's send-burst button sends) against the real sink in the `realistic` scenario.
 * As kumod does in the cluster, each provider's mail goes to the sink's port for that provider's site
 * (SINK_SITE_PORTS), so the sink pushes back as that provider; example.com goes to the default port (site `other`).
 * No cluster runs here, so three stand-in kumod pods replay the burst: they receive it at 200/s, and their delivery
 * counters follow what the real sink answered (accepted → delivered, 4xx → transfail, 5xx → fail). A stand-in TSA shows
 * what its rules give for such replies: Yahoo's TSS04 override follows replies the sink really sent, the Gmail 4.7.28
 * suspension is illustrative (at 50 recipients/s Google's site stays at the realistic scenario's limit, so the sink
 * sends no 4.7.28 here). Run: npx tsx test/console/make-docs-screenshot.ts
 */
import path from "node:path";
import nodemailer from "nodemailer";
import { getSinkStats } from "../../scripts/lib/sink-api.ts";
import { startSink } from "../inject/sink-process.ts";
import {
  type KumodMetrics,
  launchChromium,
  repoRoot,
  StandInKumod,
  StandInTsa,
  startConsole,
  tsaGmailSuspension,
  tsaYahooRateOverride,
} from "./stand-ins.ts";

const DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.com"];
const TOTAL = 1000;
const RATE = 200;
const SHARE = [0.36, 0.33, 0.31];
/** The sink site (SINK_SITE_PORTS) whose port each domain's mail goes to, as kumod's MX-to-port mapping does. */
const SINK_SITE: Record<string, string> = { "gmail.com": "google", "yahoo.com": "yahoo", "outlook.com": "outlook" };
const SITES: Record<string, string> = {
  "gmail.com": "(alt1|alt2|alt3|alt4)?.gmail-smtp-in.l.google.com",
  "yahoo.com": "(mta5|mta6|mta7).am0.yahoodns.net",
  "outlook.com": "outlook-com.olc.protection.outlook.com",
  "example.com": "mx_list:sink.kumomta.svc.cluster.local",
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const empty = (): KumodMetrics => ({
  received: { esmtp_listener: 0, http_listener: 0 },
  scheduled: {},
  readyQueues: [],
});

const sink = await startSink("realistic", { SINK_SITE_PORTS: "google=0,yahoo=0,outlook=0" });
const tsa = await new StandInTsa().start();
const kumods = await Promise.all(SHARE.map(() => new StandInKumod(empty()).start()));
const app = await startConsole([
  "--kumod",
  kumods.map((k) => k.url).join(","),
  "--tsa",
  tsa.url,
  "--sink",
  sink.httpUrl,
]);
const browser = await launchChromium();
try {
  const page = await browser.context.newPage();
  await page.goto(app.url);
  await sleep(8000);

  const transports = new Map(
    DOMAINS.map((d) => {
      const site = SINK_SITE[d];
      const port = site === undefined ? sink.smtpPort : sink.sitePorts[site];
      if (port === undefined) throw new Error(`the sink did not report a port for site ${site}`);
      const transport = nodemailer.createTransport({
        host: "127.0.0.1",
        port,
        secure: false,
        ignoreTLS: true,
        pool: true,
        maxConnections: 2,
        maxMessages: 50,
      });
      return [d, transport];
    }),
  );
  const started = Date.now();
  const sent: Promise<unknown>[] = [];
  let received = 0;
  const replay = setInterval(async () => {
    const stats = await getSinkStats(sink.httpUrl);
    const elapsed = (Date.now() - started) / 1000;
    received = Math.min(TOTAL, Math.round(elapsed * RATE));
    kumods.forEach((k, i) => {
      const share = SHARE[i] as number;
      const queued = Math.max(0, Math.round(share * (received - stats.recipients.accepted - stats.recipients.bounced)));
      k.metrics = {
        received: { esmtp_listener: 0, http_listener: Math.round(received * share) },
        scheduled: Object.fromEntries(DOMAINS.map((d, j) => [d, Math.round((queued * (4 - j)) / 10)])),
        readyQueues: DOMAINS.map((d) => {
          const c = stats.domains[d] ?? { accepted: 0, deferred: 0, bounced: 0 };
          return {
            source: "unspecified",
            site: SITES[d] as string,
            ready: Math.round((queued / 8) * (d === "gmail.com" ? 2 : 1)),
            connections: queued > 0 ? (d === "gmail.com" ? 1 : 3) : 0,
            delivered: Math.round(c.accepted * share),
            transfail: Math.round(c.deferred * share),
            fail: Math.round(c.bounced * share),
          };
        }),
        hookDelivered: 0,
      };
    });
  }, 250);
  for (let n = 0; n < TOTAL; n++) {
    const domain = DOMAINS[n % DOMAINS.length] as string;
    sent.push(
      (transports.get(domain) as nodemailer.Transporter)
        .sendMail({
          envelope: { from: "burst@sender.test", to: [`user${n}@${domain}`] },
          raw: "Subject: burst\r\n\r\nhi\r\n",
        })
        .catch(() => undefined),
    );
    await sleep(1000 / RATE);
  }
  tsa.suspensions = [tsaGmailSuspension(new Date(Date.now() + 60 * 60_000).toISOString())];
  tsa.overrides = [tsaYahooRateOverride(new Date(Date.now() + 30 * 60_000).toISOString())];
  await Promise.all(sent);
  for (const t of transports.values()) t.close();
  await sleep(4000);
  clearInterval(replay);
  const out = path.join(repoRoot, "docs/console.png");
  await page.screenshot({ path: out, fullPage: true });
  process.stdout.write(`wrote ${out}\n`);
} finally {
  await browser.close();
  await app.stop();
  await Promise.all([...kumods.map((k) => k.close()), tsa.close(), sink.stop()]);
}
