/** What the tests ask of the pods over HTTP: injection, metrics, TSA state and the sink's counters. */
import { request } from "node:http";
import type { SinkStats } from "../../../scripts/lib/sink-api.ts";

export interface HttpReply {
  status: number;
  body: string;
}

/** One HTTP request, optionally from a chosen local address (to be a peer the pods do not trust). */
export function http(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string; from?: string } = {},
): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method: opts.method ?? "GET", headers: opts.headers, localAddress: opts.from, timeout: 30_000 },
      (res) => {
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (c) => {
          body += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${url}: no answer within 30 s`)));
    req.on("error", reject);
    req.end(opts.body);
  });
}

export const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;

export interface InjectResult {
  success_count: number;
  fail_count: number;
}

export async function inject(
  kumodUrl: string,
  recipients: string[],
  opts: { authorization?: string; from?: string } = {},
): Promise<HttpReply & { result?: InjectResult }> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (opts.authorization) headers.authorization = opts.authorization;
  const reply = await http(`${kumodUrl}/api/inject/v1`, {
    method: "POST",
    headers,
    from: opts.from,
    body: JSON.stringify({
      envelope_sender: "sender@kumomta-tilt.test",
      content: "Subject: kumomta-tilt real-binary tier\r\n\r\nHello.\r\n",
      recipients: recipients.map((email) => ({ email })),
    }),
  });
  return reply.status === 200 ? { ...reply, result: JSON.parse(reply.body) as InjectResult } : reply;
}

export async function sinkStats(sinkUrl: string): Promise<SinkStats> {
  const r = await http(`${sinkUrl}/api/stats`);
  if (r.status !== 200) throw new Error(`sink /api/stats answered ${r.status}`);
  return JSON.parse(r.body) as SinkStats;
}

export const accepted = (stats: SinkStats, domain: string) => stats.domains[domain]?.accepted ?? 0;

/** Replaces the sink's active rules with a scenario of our own (the API takes a whole scenario by value). */
export async function sinkScenario(sinkUrl: string, scenario: Record<string, unknown>): Promise<void> {
  const r = await http(`${sinkUrl}/api/scenario`, {
    method: "PUT",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(scenario),
  });
  if (r.status !== 200) throw new Error(`sink refused the scenario (${r.status}): ${r.body}`);
}

/** Sum of a Prometheus counter's samples whose labels contain `labelText`. */
export function metricSum(text: string, name: string, labelText = ""): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!line.includes(labelText)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}
