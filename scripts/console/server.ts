/**
 * The console's HTTP side: the page (HTML, one esbuild bundle of web/app.ts with uPlot, CSS), the latest state as
 * JSON, and the scenario switch relayed to the sink. Everything is built in memory at start; nothing is written.
 */
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { putScenario, SinkHttpError } from "../lib/sink-api.ts";
import type { Poller } from "./poller.ts";

const WEB = join(dirname(fileURLToPath(import.meta.url)), "web");
const MAX_BODY = 4096;

export interface Page {
  html: string;
  js: string;
  css: string;
}

/** Bundles the page once: web/app.ts and uPlot into one script, uPlot's stylesheet and ours into one sheet. */
export async function buildPage(): Promise<Page> {
  const uplotCss = createRequire(import.meta.url).resolve("uplot/dist/uPlot.min.css");
  const [html, ownCss, libCss, bundle] = await Promise.all([
    readFile(join(WEB, "index.html"), "utf8"),
    readFile(join(WEB, "style.css"), "utf8"),
    readFile(uplotCss, "utf8"),
    build({
      entryPoints: [join(WEB, "app.ts")],
      bundle: true,
      write: false,
      format: "iife",
      target: "es2020",
      minify: true,
      legalComments: "none",
      logLevel: "silent",
    }),
  ]);
  return { html, js: bundle.outputFiles[0]?.text ?? "", css: `${libCss}\n${ownCss}` };
}

function send(res: ServerResponse, status: number, body: string, type: string): void {
  res.writeHead(status, { "content-type": type, "cache-control": "no-store", "x-content-type-options": "nosniff" });
  res.end(body);
}
const json = (res: ServerResponse, status: number, body: unknown) =>
  send(res, status, `${JSON.stringify(body)}\n`, "application/json");

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => {
      text += c;
      if (text.length > MAX_BODY) {
        reject(new Error(`request body larger than ${MAX_BODY} bytes`));
        req.destroy();
      }
    });
    req.on("end", () => resolve(text));
    req.on("error", reject);
  });
}

/** PUT /api/scenario {"name": "..."}: the sink's answer (status and body) is passed through. */
async function switchScenario(sinkUrl: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  let name: unknown;
  try {
    name = (JSON.parse(await readBody(req)) as { name?: unknown }).name;
  } catch (err) {
    json(res, 400, { error: `body must be JSON like {"name": "realistic"}: ${(err as Error).message}` });
    return;
  }
  if (typeof name !== "string" || name === "") {
    json(res, 400, { error: 'body must be JSON like {"name": "realistic"}' });
    return;
  }
  try {
    json(res, 200, await putScenario(sinkUrl, name));
  } catch (err) {
    if (err instanceof SinkHttpError) {
      let body: unknown = { error: err.message };
      try {
        body = JSON.parse(err.body);
      } catch {
        // the sink's text is kept in the message above
      }
      json(res, err.status, body);
    } else json(res, 502, { error: (err as Error).message });
  }
}

export function createConsoleServer(page: Page, poller: Poller): Server {
  return createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const method = req.method ?? "GET";
    const route = `${method} ${path}`;
    switch (route) {
      case "GET /":
      case "GET /index.html":
        send(res, 200, page.html, "text/html; charset=utf-8");
        return;
      case "GET /app.js":
        send(res, 200, page.js, "text/javascript; charset=utf-8");
        return;
      case "GET /app.css":
        send(res, 200, page.css, "text/css; charset=utf-8");
        return;
      case "GET /api/state":
        if (poller.state) json(res, 200, poller.state);
        else json(res, 503, { error: "the first reading is still under way" });
        return;
      case "PUT /api/scenario":
        void switchScenario(poller.opts.sinkUrl, req, res);
        return;
      case "GET /livez":
        send(res, 200, "ok\n", "text/plain");
        return;
      case "GET /readyz":
        if (poller.state) send(res, 200, "ready\n", "text/plain");
        else send(res, 503, "starting\n", "text/plain");
        return;
      default:
        json(res, 404, { error: `no such endpoint: ${method} ${path}` });
    }
  });
}
