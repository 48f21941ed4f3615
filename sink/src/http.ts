/** The HTTP side: health, Prometheus metrics, JSON stats and the scenario API. Never exposes message content. */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { parse as parseYaml } from "yaml";
import { validateScenario } from "./rules/config.ts";
import type { ScenarioControl } from "./rules/control.ts";
import type { Stats } from "./stats.ts";

const MAX_BODY = 1 << 20;

function send(res: ServerResponse, status: number, body: unknown, type = "application/json"): void {
  const text = typeof body === "string" ? body : `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
  res.end(text);
}

/**
 * The request body as text, or null as soon as it passes MAX_BODY. Past the limit nothing more is kept but the
 * connection stays up, so the client, maybe still sending, reads the 413 (cutting it here loses the answer).
 */
function readBody(req: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      if (size > MAX_BODY) return;
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
      else resolve(null);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

/**
 * PUT /api/scenario: `{"name": "realistic"}` selects a scenario of the rules file; a body with more than the
 * name is a whole scenario that replaces the active rules.
 */
export function applyScenarioRequest(control: ScenarioControl, text: string): { status: number; body: unknown } {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    return { status: 400, body: { error: "body is not valid JSON or YAML", details: [(err as Error).message] } };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { status: 400, body: { error: "body must be an object", details: ['e.g. {"name": "realistic"}'] } };
  }
  const { name, ...rest } = raw as Record<string, unknown>;
  if (typeof name !== "string") {
    return { status: 400, body: { error: "invalid scenario", details: ["name: required string"] } };
  }
  if (Object.keys(rest).length === 0) {
    if (!control.select(name)) {
      return {
        status: 404,
        body: { error: `unknown scenario ${JSON.stringify(name)}`, available: control.available() },
      };
    }
    return { status: 200, body: control.describe() };
  }
  const errors: string[] = [];
  const def = validateScenario(name, rest, control.catalogues, "scenario", errors);
  if (!def) return { status: 400, body: { error: "invalid scenario", details: errors } };
  control.replace(def);
  return { status: 200, body: control.describe() };
}

export function createHttpServer(stats: Stats, control: ScenarioControl, ready: () => boolean): Server {
  return createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const method = req.method ?? "GET";
    const only = (...methods: string[]): boolean => {
      if (methods.includes(method)) return true;
      res.setHeader("allow", methods.join(", "));
      send(res, 405, { error: `method ${method} not allowed on ${path}` });
      return false;
    };
    switch (path) {
      case "/livez":
        if (only("GET", "HEAD")) send(res, 200, "ok\n", "text/plain");
        return;
      case "/readyz":
        if (only("GET", "HEAD")) {
          if (ready()) send(res, 200, "ready\n", "text/plain");
          else send(res, 503, "draining\n", "text/plain");
        }
        return;
      case "/metrics":
        if (only("GET")) send(res, 200, stats.toPrometheus(), "text/plain; version=0.0.4; charset=utf-8");
        return;
      case "/api/stats":
        if (only("GET")) send(res, 200, stats.toJSON(control.active.def.name, control.active.chosenClients()));
        return;
      case "/api/scenario":
        if (!only("GET", "PUT")) return;
        if (method === "GET") {
          send(res, 200, control.describe());
          return;
        }
        readBody(req).then(
          (text) => {
            if (text === null) {
              // The rest of the body is not worth reading: answer now and close once the answer is out.
              res.setHeader("connection", "close");
              send(res, 413, { error: "request body larger than 1 MiB", details: ["a scenario is a few KiB"] });
              return;
            }
            const { status, body } = applyScenarioRequest(control, text);
            send(res, status, body);
          },
          // The client went away mid-body: there is no one to answer.
          () => res.destroy(),
        );
        return;
      default:
        send(res, 404, { error: `no such endpoint ${path}` });
    }
  });
}
